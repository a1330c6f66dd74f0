/** What a store needs from a database: parameterised queries (`$1`, `$2`, …) and transactions. */
export interface Queryable {
  query<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<T>>;
}

export interface QueryResult<T> {
  rows: T[];
  /** Rows inserted, updated or deleted (0 when the backend does not say). */
  rowCount: number;
}

export type SqlBackend = 'pglite' | 'postgres';

export interface Database extends Queryable {
  readonly backend: SqlBackend;
  /**
   * Runs `fn` in one transaction: committed when it resolves, rolled back when it throws.
   * On PGlite transactions are serialised (one connection); on Postgres each gets a pooled connection.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}
