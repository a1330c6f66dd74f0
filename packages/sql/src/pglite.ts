import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite, type Results } from '@electric-sql/pglite';
import { LaneGate, type Lane } from './lanes.js';
import { PlanCache, type CachedStatement, type PlanCacheOptions } from './plan-cache.js';
import { PGLITE_WAL_SYNC_PARAMS, SyncingNodeFS, syncDataDir } from './pglite-fsync.js';
import type { Database, QueryResult, Queryable, Statement } from './sql.js';
import { TableUpkeep, type UpkeepOptions } from './upkeep.js';

/** The planner's cost of a random page read on PGlite (pages in memory; Postgres' default: 4). */
export const PGLITE_RANDOM_PAGE_COST = 1.1;

/**
 * PGlite's WAL settings (`openPglite`, for its one connection, which is also the process that
 * creates WAL segments: a single-user backend has no WAL writer or checkpointer). A new 16 MB
 * WAL segment is not filled with zeros first (`wal_init_zero = off`: only its last byte is
 * written, as on copy-on-write file systems): the zeros cost the one thread 16 MB of writes
 * through PGlite's file system layer every ~3,000 runs, and prove nothing a commit relies on —
 * a commit's WAL records are written (and synced: `SyncingNodeFS`) before its
 * answer whether or not the segment was zero-filled; the zeros only reserve disk space early
 * (docs/runs.md, _PGlite's WAL settings_). Durability settings (`fsync`, `synchronous_commit`,
 * PGlite's `relaxedDurability`) are left as they are.
 */
export const PGLITE_WAL_SETTINGS = 'set wal_init_zero = off';

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
 * directory we drop that flag and keep durability strict, and make Postgres' syncs reach the
 * disk ({@link SyncingNodeFS}: PGlite's own file system layer drops them), so an acknowledged
 * write survives a crash of the process and of the machine: a synchronous commit returns once
 * its WAL is `fdatasync`ed (one sync per transaction, so per group commit), a checkpoint syncs
 * the data files and `pg_control` before it recycles WAL, and a new data directory is synced
 * whole before this returns. In memory there is nothing to make durable.
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
  const fresh = opts.dataDir !== undefined && !existsSync(join(opts.dataDir, 'PG_VERSION'));
  const pg = new PGlite({
    ...(opts.dataDir ? { fs: new SyncingNodeFS(opts.dataDir) } : {}),
    relaxedDurability: false,
    ...(opts.dataDir
      ? {
          startParams: [...PGlite.defaultStartParams.filter((p) => p !== '-F'), ...PGLITE_WAL_SYNC_PARAMS],
        }
      : {}),
  });
  await pg.waitReady;
  // PGlite copied its template cluster in without a sync (a crash after a fresh start runs
  // Postgres' own sync of the directory at the next start: recovery).
  if (fresh && opts.dataDir) await syncDataDir(opts.dataDir);
  // For the session (the one connection, which also writes the WAL): see above.
  await pg.exec(`set random_page_cost = ${PGLITE_RANDOM_PAGE_COST}; ${PGLITE_WAL_SETTINGS}`);
  // One cache for the one connection: a statement prepared inside a transaction stays prepared.
  // One connection, one transaction at a time (the gate): row locks keep nothing apart here.
  const plans = new PlanCache({ rowLocks: false, ...opts.plans });
  // `rowCount` is the statement's own (its command tag: rows changed or returned, as
  // node-postgres'); PGlite's `affectedRows` adds up every statement of one `exec`, so in a
  // transaction whose statements travel together it would count the writes before this one.
  const toResult = <T>(r: Results<unknown>): QueryResult<T> => ({
    rows: r.rows as T[],
    rowCount: r.rowCount ?? r.affectedRows ?? r.rows.length,
  });
  /**
   * Sends `cached`'s PREPARE (when due) as an `exec` of its own, with the transaction's pending
   * `BEGIN` in front (no longer pending from then on, even if the PREPARE fails after it ran).
   */
  const prepare = async (cached: CachedStatement, begin?: { pending: boolean }): Promise<void> => {
    if (!cached.prepare) return;
    const prefix = begin?.pending ? 'begin; ' : '';
    if (begin) begin.pending = false;
    await pg.exec(prefix + cached.prepare).catch((e: unknown) => {
      cached.prepareFailed();
      throw e;
    });
  };
  /**
   * One statement: from its prepared plan (`EXECUTE`, see PlanCache), as a simple query when it
   * has no parameters, else with them (extended protocol). `begin`: the transaction's `BEGIN`,
   * not sent yet — it rides in the same `exec` when the statement goes by `exec` (one call
   * into PGlite instead of two), else it is sent first; it is no longer pending once sent.
   * `asked`: what PlanCache already answered for it (asking twice would count it twice).
   */
  const one = async <T>(
    text: string,
    params: unknown[] | undefined,
    begin?: { pending: boolean },
    asked?: { cached: CachedStatement | undefined },
  ): Promise<QueryResult<T>> => {
    const cached = asked ? asked.cached : plans.statement(text, params);
    if (cached) await prepare(cached, begin);
    const prefix = begin?.pending ? 'begin; ' : '';
    if (begin) begin.pending = false;
    if (cached) {
      const results = await pg.exec(prefix + cached.execute);
      return toResult<T>(results[results.length - 1]!);
    }
    if (!params || params.length === 0) {
      const results = await pg.exec(prefix + text);
      return toResult<T>(results[results.length - 1]!);
    }
    if (prefix) await pg.exec('begin');
    return toResult<T>(await pg.query<T>(text, params));
  };
  /**
   * A transaction on the one connection, in as few calls into PGlite as its statements allow
   * (each call costs ~0.05 ms of the control plane's one thread besides its statements' work:
   * two protocol messages, a result parse): `BEGIN` goes in the same `exec` as the first
   * statement, the `atCommit` statements and `COMMIT` in one, and a {@link Queryable.commitWith}
   * statement, a {@link Queryable.pipeline}'s statements, each in one too when their plans are
   * prepared (EXECUTE with literals). A scheduling pass was 6–7 calls (BEGIN, the finish riding
   * it, the page, the claim on offer, a setting, COMMIT), now 2. A transaction that sends
   * nothing sends no `BEGIN` and no `COMMIT`, as on Postgres. The gate (below) keeps every other
   * call off the connection until it ended.
   */
  const transaction = async <T>(fn: (tx: Queryable) => Promise<T>): Promise<T> => {
    const begin = { pending: true };
    const atCommit: string[] = [];
    let committed = false;
    const usable = () => {
      if (committed) throw new Error('the transaction already committed (commitWith)');
    };
    /** The `atCommit` statements and COMMIT after `head` (statements as text), in one `exec`. */
    const commit = async (head: string[]): Promise<Results[]> => {
      const prefix = begin.pending ? ['begin'] : [];
      begin.pending = false;
      const results = await pg.exec([...prefix, ...head, ...atCommit, 'commit'].join(';\n'));
      // A transaction aborted by a statement whose error was caught is rolled back by its COMMIT.
      if (results[results.length - 1]?.command === 'ROLLBACK')
        throw new Error('the transaction was rolled back instead of committed');
      committed = true;
      return results;
    };
    const tx: Queryable = {
      query: (text, params) => {
        usable();
        return one(text, params, begin);
      },
      atCommit: (text) => {
        atCommit.push(text);
      },
      // Each prepared statement an EXECUTE, all in one `exec` (BEGIN first when nothing was sent
      // before); with one not prepared yet (a first sighting, or parameters PlanCache does not
      // take), one call each.
      pipeline: async <R>(statements: Statement[]) => {
        usable();
        const cached = statements.map((st) => plans.statement(st.text, st.params));
        const results: Array<QueryResult<unknown>> = [];
        if (cached.every((c) => c !== undefined)) {
          for (const c of cached) await prepare(c, begin);
          const prefix = begin.pending ? 'begin; ' : '';
          begin.pending = false;
          const all = await pg.exec(prefix + cached.map((c) => c.execute).join(';\n'));
          const first = all.length - statements.length;
          for (let i = 0; i < statements.length; i++) results.push(toResult(all[first + i]!));
        } else {
          for (const [i, st] of statements.entries())
            results.push(await one(st.text, st.params, begin, { cached: cached[i] }));
        }
        statements.forEach((st, i) => st.onArrival?.(results[i]!));
        statements.forEach((st, i) => st.onResult?.(results[i]!));
        return results[results.length - 1] as QueryResult<R>;
      },
      // The last statement with the atCommit ones and COMMIT: one `exec` when its plan is prepared.
      commitWith: async <R>(statement: Statement) => {
        usable();
        const cached = plans.statement(statement.text, statement.params);
        if (cached) {
          await prepare(cached, begin);
          const at = begin.pending ? 1 : 0;
          return toResult<R>((await commit([cached.execute]))[at]!);
        }
        const out = await one<R>(statement.text, statement.params, begin, { cached });
        await commit([]);
        return out;
      },
    };
    try {
      const out = await fn(tx);
      if (!committed && (!begin.pending || atCommit.length > 0)) await commit([]);
      return out;
    } catch (e) {
      // Harmless when nothing is open (a BEGIN that never ran: a warning, not an error).
      if (!begin.pending && !committed) await pg.exec('rollback').catch(() => {});
      throw e;
    }
  };
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
    query: (text, params) => after(gate.run(name, () => one(text, params))),
    transaction: (fn) => after(gate.run(name, () => transaction(fn))),
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
