import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openPglite } from './pglite.js';
import { openPostgres } from './postgres.js';
import type { Database, SqlBackend } from './sql.js';

/** Where tests find the Postgres server (CI machines: 127.0.0.1:5432, trust auth, database `test`). */
export const TEST_POSTGRES_URL =
  process.env.RUNT_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface TestDatabase {
  backend: SqlBackend;
  db: Database;
  /** URL of the fresh database (Postgres only), for child processes that open their own pool. */
  url?: string;
  /** Closes and, on Postgres, drops the fresh database. */
  dispose(): Promise<void>;
}

/** The backends every store test runs against. */
export const TEST_BACKENDS: SqlBackend[] = ['pglite', 'postgres'];

/**
 * A fresh, empty database: in-memory PGlite, or a new database on the test Postgres server
 * (dropped by `dispose`). A missing Postgres server fails the test; it is never skipped.
 *
 * @example
 * const t = await createTestDatabase('postgres'); try { … t.db … } finally { await t.dispose() }
 */
export async function createTestDatabase(backend: SqlBackend): Promise<TestDatabase> {
  if (backend === 'pglite') {
    const db = await openPglite();
    return { backend, db, dispose: () => db.close() };
  }
  const name = `runt_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: TEST_POSTGRES_URL });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(TEST_POSTGRES_URL);
  url.pathname = `/${name}`;
  const db = await openPostgres({ url: url.toString() });
  return {
    backend,
    db,
    url: url.toString(),
    async dispose() {
      await db.close();
      const c = new pg.Client({ connectionString: TEST_POSTGRES_URL });
      await c.connect();
      try {
        await c.query(`drop database if exists ${name} with (force)`);
      } finally {
        await c.end();
      }
    },
  };
}
