import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The Postgres server every peer shares (trust auth; the bench creates and drops its own databases). */
export const BENCH_POSTGRES_URL =
  process.env.RUNT_BENCH_POSTGRES_URL ??
  process.env.RUNT_TEST_POSTGRES_URL ??
  'postgres://postgres@127.0.0.1:5432/test';

export interface BenchDatabase {
  name: string;
  url: string;
  /** Pids of the server backends connected to this database right now. */
  backendPids(): Promise<number[]>;
  /** Drops the database (with force: a crashed peer's connections do not keep it). */
  drop(): Promise<void>;
}

async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: BENCH_POSTGRES_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/**
 * A fresh database on the shared server for one peer's measurement, so no peer sees another's
 * tables and each leaves nothing behind. Names start with `runt_bench_`.
 *
 * @example
 * const d = await createBenchDatabase('graphile'); try { … d.url … } finally { await d.drop() }
 */
export async function createBenchDatabase(peer: string): Promise<BenchDatabase> {
  const name = `runt_bench_${peer.replace(/[^a-z0-9]/g, '_')}_${randomBytes(4).toString('hex')}`;
  await withAdmin((c) => c.query(`create database ${name}`));
  const url = new URL(BENCH_POSTGRES_URL);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    backendPids: () =>
      withAdmin(async (c) =>
        (
          await c.query<{ pid: number }>('select pid from pg_stat_activity where datname = $1', [name])
        ).rows.map((r) => r.pid),
      ),
    drop: () => withAdmin(async (c) => void (await c.query(`drop database if exists ${name} with (force)`))),
  };
}

/**
 * One line on the shared server's state, printed before a Postgres measurement: every system
 * runs on a fresh database, but some server state is shared and slows them all (not their
 * ratios) — a session holding an old snapshot keeps every database's dead rows from being
 * pruned (`backend_xmin`), and with `autovacuum = off` (this machine's CI configuration)
 * nothing cleans up after a killed test. Read-only; never fails the bench.
 *
 * @example
 * console.log(await serverState()); // "postgres server: autovacuum off, 12 databases (…), oldest snapshot held 0 s, …"
 */
export async function serverState(): Promise<string> {
  try {
    return await withAdmin(async (c) => {
      const r = await c.query<{
        autovacuum: string;
        databases: number;
        leftover: number;
        xmin_age: number | null;
        xmin_s: number | null;
        idle_in_tx: number;
        sessions: number;
      }>(
        `select current_setting('autovacuum') as autovacuum,
                (select count(*)::int from pg_database where not datistemplate) as databases,
                (select count(*)::int from pg_database where datname like 'runt\\_bench\\_%' or datname like 'runt\\_test\\_%') as leftover,
                (select max(age(backend_xmin))::int from pg_stat_activity where pid <> pg_backend_pid()) as xmin_age,
                (select extract(epoch from now() - min(xact_start))::float8 from pg_stat_activity
                  where pid <> pg_backend_pid() and backend_xmin is not null) as xmin_s,
                (select count(*)::int from pg_stat_activity where state like 'idle in transaction%') as idle_in_tx,
                (select count(*)::int from pg_stat_activity where backend_type = 'client backend') - 1 as sessions`,
      );
      const s = r.rows[0]!;
      return (
        `postgres server: autovacuum ${s.autovacuum}, ${s.databases} databases (${s.leftover} runt_bench_/runt_test_), ` +
        `${s.sessions} other sessions (${s.idle_in_tx} idle in transaction), oldest snapshot held ` +
        `${s.xmin_s === null ? '-' : `${s.xmin_s.toFixed(0)} s`} (xmin age ${s.xmin_age ?? '-'} transactions)`
      );
    });
  } catch (e) {
    return `postgres server: state not read (${e instanceof Error ? e.message : String(e)})`;
  }
}
