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
  /**
   * The priority lane: the same database for the few short statements that keep work alive
   * (lease renewals) and so must not queue behind that work. On PGlite (one connection) its
   * queries and transactions run before every query and transaction still waiting in the normal
   * lane — the one already running finishes first. On Postgres it has its own small pool, so a
   * normal pool whose connections are all busy does not hold it up. Keep it for short,
   * infrequent statements: it can delay normal work, never the other way round.
   * `db.priority.priority` is `db.priority`.
   */
  readonly priority: Database;
  /**
   * `LISTEN channel` on a dedicated connection (never one of the pool's): `onMessage` gets the
   * payload of every `pg_notify(channel, payload)` committed after the returned promise
   * resolved. When that connection drops (server restart, `pg_terminate_backend`, network),
   * `onConnectionLost` is called once and nothing more is delivered: notifications sent
   * meanwhile are lost, so the caller must treat everything it learnt from them as unknown and
   * call `listen` again to re-establish. Not called after `close()` of the returned handle.
   * Postgres only; undefined on PGlite (one process, nothing to hear from others).
   */
  listen?(
    channel: string,
    onMessage: (payload: string) => void,
    onConnectionLost: (err?: Error) => void,
  ): Promise<Listener>;
  close(): Promise<void>;
}

/** A live `LISTEN`; `close()` ends its connection (idempotent). */
export interface Listener {
  close(): Promise<void>;
}
