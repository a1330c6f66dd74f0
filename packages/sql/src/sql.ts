/** What a store needs from a database: parameterised queries (`$1`, `$2`, …) and transactions. */
export interface Queryable {
  /**
   * One statement. On Postgres a query without parameters may hold several `;`-separated
   * statements, sent in one round trip: each takes its own snapshot (so a lock taken by one is
   * held before the next one reads) and the rows returned are the last one's. PGlite takes
   * one statement per query.
   */
  query<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<T>>;
  /**
   * Several statements, each with its own parameters, in ONE round trip (Postgres; on PGlite a
   * transaction's only, one call into PGlite once their plans are prepared: `EXECUTE`s in one
   * `exec`, see openPglite), each prepared (parsed and planned) once per connection. Each statement
   * takes its own snapshot (read committed), so a lock one of them takes is held before the
   * next one reads — as with the statements of a parameter-less `query`, but with parameters
   * instead of literals. Outside a transaction they run in one implicit transaction: committed
   * when the last one succeeded, nothing of it when one fails. Inside one they are part of it
   * (its `BEGIN` goes first in the pipeline when nothing was sent before). Resolves with the
   * last statement's rows.
   */
  pipeline?<T = Record<string, unknown>>(statements: Statement[]): Promise<QueryResult<T>>;
  /**
   * A transaction's only (undefined elsewhere, and on wrappers that do not pass it on): a
   * parameter-less statement run when the transaction commits, just before `COMMIT` — in the
   * same round trip (`…;COMMIT`; PGlite: the same call), so a statement whose answer nobody reads (a
   * `pg_notify`) costs no round trip of its own. Not run when `fn` throws; when it fails the
   * transaction rolls back and `transaction` rejects. Build values into it with `sqlLiteral`.
   */
  atCommit?(text: string): void;
  /**
   * A transaction's only (undefined elsewhere): its LAST statement, sent with the `atCommit`
   * statements and the `COMMIT` in ONE round trip (Postgres: a pipeline; PGlite: one `exec` once
   * its plan is prepared; `BEGIN` first when nothing was sent before), resolving with that statement's rows once the transaction
   * committed. Nothing may be sent in the transaction after it, and the transaction sends no
   * `COMMIT` of its own. When the statement (or the commit) fails, nothing of the transaction
   * is committed and it rejects, as a failing statement does.
   */
  commitWith?<T = Record<string, unknown>>(statement: Statement): Promise<QueryResult<T>>;
}

/**
 * A string as an SQL literal (the quoting of libpq's `PQescapeLiteral`, as node-postgres does
 * it): `'` doubled, and with any `\` the `E'…'` form with `\` doubled, so it reads the same
 * whatever `standard_conforming_strings` is. For statements that cannot take parameters
 * ({@link Queryable.atCommit}, several statements in one query).
 *
 * @example
 * sqlLiteral("it's"); // 'it''s'
 */
export function sqlLiteral(s: string): string {
  if (s.includes('\u0000')) throw new Error('an SQL literal cannot hold a NUL character');
  const body = s.replace(/'/g, "''");
  return s.includes('\\') ? ` E'${body.replace(/\\/g, '\\\\')}'` : `'${body}'`;
}

/** One statement of a {@link Database.pipeline}: its text and its parameters (`$1`, `$2`, …). */
export interface Statement {
  text: string;
  params?: unknown[];
  /**
   * In a pipeline (Postgres), called with this statement's own result once the pipeline
   * succeeded, before it resolves (a pipeline resolves with one statement's rows only).
   */
  onResult?: (result: QueryResult<unknown>) => void;
  /**
   * In a pipeline (Postgres), called with this statement's own result as soon as it arrives,
   * before the statements after it may have run; the pipeline may still fail after it.
   */
  onArrival?: (result: QueryResult<unknown>) => void;
}

export interface QueryResult<T> {
  rows: T[];
  /** Rows inserted, updated or deleted (0 when the backend does not say). */
  rowCount: number;
}

export type SqlBackend = 'pglite' | 'postgres';

/**
 * Whether a transaction's `BEGIN` is sent in the same round trip (PGlite: call) as its first
 * statement: when that statement has no parameters both go as one simple query (`BEGIN;…`);
 * otherwise `BEGIN` is a round trip of its own (PGlite: unless the statement's plan is
 * prepared, see openPglite). `countStatements` counts round trips by it.
 */
export const beginRidesWith = (params?: unknown[]): boolean => params === undefined || params.length === 0;

export interface Database extends Queryable {
  readonly backend: SqlBackend;
  /**
   * Runs `fn` in one transaction: committed when it resolves, rolled back when it throws.
   * On PGlite transactions are serialised (one connection); on Postgres each gets a pooled
   * connection, and its `BEGIN` is sent with the first statement when that one has no
   * parameters (one round trip fewer: make a transaction's first statement parameter-less when
   * its latency matters).
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
   * Several channels (an array) share one connection and one server process: Postgres wakes
   * every process listening in the database on each `NOTIFY` of any channel, so a listener per
   * channel costs each notification a wake-up per channel (issue 10's cross-replica tail).
   * `onMessage` is told each payload's channel.
   */
  listen?(
    channel: string | readonly string[],
    onMessage: (payload: string, channel: string) => void,
    onConnectionLost: (err?: Error) => void,
  ): Promise<Listener>;
  close(): Promise<void>;
}

/** A live `LISTEN`; `close()` ends its connection (idempotent). */
export interface Listener {
  close(): Promise<void>;
}
