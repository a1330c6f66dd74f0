import pg from 'pg';
import type { Database, QueryResult, Queryable } from './sql.js';

export interface OpenPostgresOptions {
  /** `postgres://user@host:port/db` */
  url: string;
  /** Pool size (default 10). */
  max?: number;
}

// int8 (bigint) as JS number: our counters (fencing tokens, seq) stay far below 2^53.
pg.types.setTypeParser(20, (v) => Number(v));

/**
 * Opens a pooled connection to a Postgres server.
 *
 * @example
 * const db = await openPostgres({ url: 'postgres://postgres@127.0.0.1:5432/test' });
 */
export async function openPostgres(opts: OpenPostgresOptions): Promise<Database> {
  const pool = new pg.Pool({ connectionString: opts.url, max: opts.max ?? 10 });
  // A dropped idle connection must not crash the process; the next query gets a fresh one.
  pool.on('error', () => {});
  const client = await pool.connect(); // fail fast on a bad URL
  client.release();
  const run = async <T>(q: pg.Pool | pg.PoolClient, text: string, params?: unknown[]): Promise<QueryResult<T>> => {
    const r = await q.query(text, params as unknown[]);
    return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
  };
  return {
    backend: 'postgres',
    query: (text, params) => run(pool, text, params),
    async transaction(fn) {
      const c = await pool.connect();
      try {
        await c.query('BEGIN');
        const tx: Queryable = { query: (text, params) => run(c, text, params) };
        const out = await fn(tx);
        await c.query('COMMIT');
        return out;
      } catch (e) {
        await c.query('ROLLBACK').catch(() => {});
        throw e;
      } finally {
        c.release();
      }
    },
    close: () => pool.end(),
  };
}
