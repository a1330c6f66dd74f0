import { mkdirSync } from 'node:fs';
import { PGlite, type Results } from '@electric-sql/pglite';
import { LaneGate, type Lane } from './lanes.js';
import { PlanCache, type PlanCacheOptions } from './plan-cache.js';
import type { Database, QueryResult, Queryable } from './sql.js';
import { TableUpkeep, type UpkeepOptions } from './upkeep.js';

/** The planner's cost of a random page read on PGlite (pages in memory; Postgres' default: 4). */
export const PGLITE_RANDOM_PAGE_COST = 1.1;

export interface OpenPgliteOptions {
  /** Directory for the data files; omit for an in-memory database (tests, embedding). */
  dataDir?: string;
  /** How long prepared plans are kept (see PlanCache). */
  plans?: PlanCacheOptions;
  /** When tables are vacuumed and analysed (see TableUpkeep; autovacuum's defaults); `false`: never. */
  upkeep?: UpkeepOptions | false;
}

/**
 * Opens embedded Postgres (PGlite). PGlite starts its backend with `-F` (fsync off); on a data
 * directory we drop that flag and keep durability strict, so an acknowledged write survives a
 * crash of the process. In memory there is nothing to make durable.
 *
 * PGlite has one connection and runs one query or transaction at a time, first come first
 * served. Every call goes through a `LaneGate` instead, so `db.priority` (lease renewals) goes
 * ahead of whatever normal work is queued: under load a renewal waits for the statement in
 * progress, not for the whole queue (issue 8, defect 10).
 *
 * A statement sent a second time is planned once and run from its prepared plan (`PlanCache`):
 * PGlite's own `query` plans every statement again, which cost the hot ones more than running
 * them did (issue 9).
 *
 * PGlite's pages are in its own memory (a data directory is read through the OS's page cache,
 * never a disk seek per page), so the planner is told a random page read costs about what a
 * sequential one does (`random_page_cost = 1.1`; Postgres' default of 4 is sized for disk
 * seeks): a join of a batch of ids (`jsonb_to_recordset`, always estimated at 100 rows) to a
 * table of a few thousand rows hashed every row of a sequential scan instead of looking the
 * ids up by primary key — the claim on offer did it twice per batch (docs/runs.md, _Hot paths_).
 *
 * PGlite has no autovacuum: `TableUpkeep` stands in for it, between statements — a table whose
 * dead or changed rows pass autovacuum's thresholds is vacuumed and analysed in its turn on the
 * connection (docs/runs.md, _PGlite upkeep_).
 *
 * @example
 * const db = await openPglite({ dataDir: './.runt/db' });
 * await db.query('select 1');
 */
export async function openPglite(opts: OpenPgliteOptions = {}): Promise<Database> {
  if (opts.dataDir) mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const pg = new PGlite({
    ...(opts.dataDir ? { dataDir: opts.dataDir } : {}),
    relaxedDurability: false,
    ...(opts.dataDir ? { startParams: PGlite.defaultStartParams.filter((p) => p !== '-F') } : {}),
  });
  await pg.waitReady;
  // For the session (the one connection): see above.
  await pg.exec(`set random_page_cost = ${PGLITE_RANDOM_PAGE_COST}`);
  // One cache for the one connection: a statement prepared inside a transaction stays prepared.
  const plans = new PlanCache(opts.plans);
  const wrap = (q: Pick<PGlite, 'query' | 'exec'>): Queryable => ({
    async query<T>(text: string, params?: unknown[]): Promise<QueryResult<T>> {
      const cached = plans.statement(text, params);
      if (cached) {
        if (cached.prepare)
          await q.exec(cached.prepare).catch((e: unknown) => {
            cached.prepareFailed();
            throw e;
          });
        const results = await q.exec(cached.execute);
        const r = results[results.length - 1]! as Results<T>;
        return { rows: r.rows, rowCount: r.affectedRows ?? r.rows.length };
      }
      const r = await q.query<T>(text, params as unknown[]);
      return { rows: r.rows, rowCount: r.affectedRows ?? r.rows.length };
    },
  });
  const self = wrap(pg);
  const gate = new LaneGate();
  const upkeep =
    opts.upkeep === false
      ? undefined
      : new TableUpkeep(
          (fn) => gate.run('normal', () => fn({ query: (text) => pg.query(text) })),
          opts.upkeep,
        );
  // A look at the tables' counters is queued (when due) once a statement has run.
  const after = <T>(p: Promise<T>): Promise<T> => {
    if (upkeep)
      void p.then(
        () => upkeep.maybe(),
        () => upkeep.maybe(),
      );
    return p;
  };
  const lane = (name: Lane): Omit<Database, 'priority'> => ({
    backend: 'pglite',
    query: (text, params) => after(gate.run(name, () => self.query(text, params))),
    transaction: (fn) =>
      after(
        gate.run(name, () =>
          pg.transaction(async (tx) => {
            const atCommit: string[] = [];
            const q = wrap(tx);
            const out = await fn({
              ...q,
              atCommit: (text) => {
                atCommit.push(text);
              },
            });
            for (const text of atCommit) await q.query(text);
            return out;
          }),
        ),
      ),
    // A VACUUM running is let finish first (a statement of the normal lanes is the caller's).
    close: async () => {
      await upkeep?.close();
      await pg.close();
    },
  });
  const priority: Database = {
    ...lane('priority'),
    get priority() {
      return priority;
    },
  };
  return { ...lane('normal'), priority };
}
