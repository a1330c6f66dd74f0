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
