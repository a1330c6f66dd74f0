export type { Database, Listener, Queryable, QueryResult, SqlBackend, Statement } from './sql.js';
export { sqlLiteral } from './sql.js';
export { openPglite, type OpenPgliteOptions } from './pglite.js';
export type { UpkeepDone, UpkeepOptions } from './upkeep.js';
export { openPostgres, POOL_CONNECT_MS, POOL_MAX, type OpenPostgresOptions } from './postgres.js';
export { openDatabase } from './open.js';
export { migrate, type Migration } from './migrate.js';
export { isConnectionLost, isDatabaseUnavailable } from './database-unavailable.js';
export { countStatements, type StatementCount } from './counting.js';
