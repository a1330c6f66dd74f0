import { openPglite } from './pglite.js';
import { openPostgres } from './postgres.js';
import type { Database } from './sql.js';

/**
 * Opens the database the configuration names: a Postgres server when `databaseUrl` is a
 * `postgres://` / `postgresql://` URL, embedded PGlite under `dataDir` otherwise.
 *
 * @example
 * const db = await openDatabase({ databaseUrl: process.env.DATABASE_URL, dataDir: './.runt/db' });
 */
export async function openDatabase(opts: {
  databaseUrl?: string | undefined;
  dataDir?: string;
  /** Postgres: how long opening a connection may take, in ms (default `POOL_CONNECT_MS`). */
  connectMs?: number | undefined;
}): Promise<Database> {
  const url = opts.databaseUrl?.trim();
  if (url) {
    if (!/^postgres(ql)?:\/\//.test(url)) throw new Error('DATABASE_URL must be a postgres:// URL');
    return openPostgres(opts.connectMs === undefined ? { url } : { url, connectMs: opts.connectMs });
  }
  return openPglite(opts.dataDir ? { dataDir: opts.dataDir } : {});
}
