import { createSqlLeaseStore, leaseMigrations } from '@runt/leases';
import { pairingMigrations } from '@runt/pairing';
import { migrate, type Database, type Queryable, type SqlBackend, type Statement } from '@runt/sql';
import { createTestDatabase, type TestDatabase } from '@runt/sql/testing';
import { pino } from 'pino';
import { EventWaiters } from '../src/event-waiters.js';
import { controlPlaneMigrations } from '../src/migrations.js';
import { CommandStore } from '../src/runs/command-store.js';
import { EventStore } from '../src/runs/event-store.js';
import { RunLifecycle } from '../src/runs/run-lifecycle.js';
import { createRunSignals, type RunSignals } from '../src/runs/run-signals.js';
import { RunStore } from '../src/runs/run-store.js';
import { Scheduler, type SchedulerOptions } from '../src/runs/scheduler.js';

/** A database with the control plane's tables. */
export async function migratedDatabase(backend: SqlBackend): Promise<TestDatabase> {
  const t = await createTestDatabase(backend);
  await migrate(t.db, [...pairingMigrations, ...leaseMigrations, ...controlPlaneMigrations]);
  return t;
}

/**
 * A listening, linked workstation with a live credential offering `runtime`: `slots` slots (its
 * `cpu_count`) for the scheduler, its link held by `replica` (null: by none).
 */
export async function addWorkstation(
  db: Database,
  id: string,
  runtime: string,
  slots: number,
  replica: string | null = null,
): Promise<void> {
  await db.query(
    `insert into workstations (id, display_name, listening, last_seen_at, runtimes, cpu_count, link_state, link_replica)
     values ($1, $1, true, now(), $2::jsonb, $3, 'connected', $4)`,
    [id, JSON.stringify([runtime]), slots, replica],
  );
  await db.query(
    `insert into credentials (id, kind, token_hash, workstation_id) values ($1, 'workstation', $2, $3)`,
    [`cred_${id}`, `hash_${id}`, id],
  );
}

/** Relays nothing: without a relay there are no agent links, so nothing to carry. */
const NO_RELAY: Parameters<typeof createRunSignals>[0]['relay'] = {
  send() {},
  relay: async (_tx, items) => items,
  capacityFreed() {},
};

/** Run signals that carry nothing to agents ({@link NO_RELAY}): a test without links. */
export function noRelaySignals(): RunSignals {
  return createRunSignals({ waiters: new EventWaiters(), relay: NO_RELAY });
}

/**
 * The run lifecycle on `db` with its real stores, and `signals` (default {@link noRelaySignals}).
 *
 * @example
 * const lifecycle = testLifecycle(countStatements(t.db, onCount));
 */
export function testLifecycle(db: Database, signals: RunSignals = noRelaySignals()): RunLifecycle {
  return new RunLifecycle({
    db,
    leases: createSqlLeaseStore(db),
    runs: new RunStore(db),
    events: new EventStore(db),
    commands: new CommandStore(db),
    signals,
  });
}

/** A scheduler on `db` (replica `cp`, a tick of a minute), with `options` over those. */
export function newScheduler(
  db: Database,
  relay = NO_RELAY,
  options: Partial<Pick<SchedulerOptions, 'pageSize' | 'claimers' | 'replicaId' | 'holdCancels'>> = {},
): Scheduler {
  return new Scheduler({
    db,
    logger: pino({ level: 'silent' }),
    signals: createRunSignals({ waiters: new EventWaiters(), relay }),
    replicaId: 'cp',
    tickMs: 60_000,
    ...options,
  });
}

/**
 * `db` with every scheduling page a transaction reads reported to `onPage` (its rows), whether
 * it went as a query (PGlite) or in a pipeline with the lock (Postgres).
 */
export function watchingPages(db: Database, onPage: (row: { queued: unknown[] }) => void): Database {
  const isPage = (text: string) => text.includes('for update skip locked');
  return {
    ...db,
    transaction: <T>(fn: (tx: Queryable) => Promise<T>) =>
      db.transaction((tx) =>
        fn({
          ...tx,
          query: async <R>(text: string, params?: unknown[]) => {
            const r = await tx.query<R>(text, params);
            if (isPage(text)) onPage(r.rows[0] as { queued: unknown[] });
            return r;
          },
          ...(tx.pipeline && {
            pipeline: async <R>(statements: Statement[]) => {
              const r = await tx.pipeline!<R>(statements);
              if (isPage(statements.at(-1)!.text)) onPage(r.rows[0] as { queued: unknown[] });
              return r;
            },
          }),
        }),
      ),
  };
}

/**
 * Resolves once some session on `db`'s database waits for an advisory lock (`pg_locks`, not
 * granted): the pass (or a submit) behind a test's holder of the scheduler lock. Only this
 * database's locks count: `pg_locks` is server-wide, and other processes on the shared test
 * server (benches, other tests) wait for the same key. Throws after ~5 s of polling (every
 * 10 ms), naming `who` never waited.
 *
 * @example
 * const pass = scheduler.pass(); await untilPassWaitsForLock(t.db); release();
 */
export async function untilPassWaitsForLock(db: Queryable, who = 'the pass'): Promise<void> {
  for (let i = 0; ; i++) {
    const waiting = await db.query<{ n: number }>(
      `select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted
         and database = (select oid from pg_database where datname = current_database())`,
    );
    if (waiting.rows[0]!.n > 0) return;
    if (i > 500) throw new Error(`${who} never waited for the lock`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface PlanNode {
  'Relation Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  Plans?: PlanNode[];
}

/**
 * Rows a plan read from `tables` (rows × loops of every node scanning one of them; with
 * `filtered`, also the rows its filter then dropped, each read all the same).
 */
function rowsRead(node: PlanNode, tables: string[], filtered = false): number {
  const own =
    node['Relation Name'] && tables.includes(node['Relation Name'])
      ? ((node['Actual Rows'] ?? 0) + (filtered ? (node['Rows Removed by Filter'] ?? 0) : 0)) *
        (node['Actual Loops'] ?? 0)
      : 0;
  return own + (node.Plans ?? []).reduce((s, p) => s + rowsRead(p, tables, filtered), 0);
}

/**
 * Rows `text` read from `tables` (default `runs`), by `explain (analyze, format json)` on `q`.
 * EXPLAIN ANALYZE executes the statement: its writes happen (in `q`'s transaction, if any).
 *
 * @example
 * expect(await explainRowsRead(t.db, pageSql(true), [0, 200])).toBeLessThan(500);
 */
export async function explainRowsRead(
  q: Queryable,
  text: string,
  params?: unknown[],
  tables: string[] = ['runs'],
  { filtered = false }: { filtered?: boolean } = {},
): Promise<number> {
  const r = await q.query<{ 'QUERY PLAN': unknown }>(`explain (analyze, format json) ${text}`, params);
  const json = r.rows[0]!['QUERY PLAN'];
  const plan = (typeof json === 'string' ? JSON.parse(json) : json) as Array<{ Plan: PlanNode }>;
  return rowsRead(plan[0]!.Plan, tables, filtered);
}
