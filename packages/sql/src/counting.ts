import { beginRidesWith, type Database, type Queryable } from './sql.js';

/** What {@link countStatements} reports for each statement sent. */
export interface StatementCount {
  /** Statements sent: every `query`, plus `BEGIN` and `COMMIT`/`ROLLBACK` of each transaction. */
  statements: number;
  /** Transactions opened. */
  transactions: number;
  /**
   * Round trips to the server (PGlite: calls into it): as `statements`, less each `BEGIN` that
   * rode with its transaction's first statement (when that statement has no parameters:
   * `beginRidesWith`) and each `atCommit` statement (sent with the `COMMIT`). A query holding
   * several statements is one of each.
   */
  roundTrips: number;
}

/**
 * Wraps a `Database` so every statement it sends is counted: each `query` (inside a transaction
 * or not) is one, a transaction adds two (its `BEGIN` and `COMMIT`/`ROLLBACK`). `onCount` gets
 * the increments as they happen (`{ statements: 1, transactions: 0, roundTrips: 1 }` per query,
 * `{ statements: 2, transactions: 1, roundTrips: 2 }` per transaction, a query whose `BEGIN`
 * rode with it `roundTrips: 0`), so a metrics counter can add them up.
 * `priority` is counted the same way. Everything else (`listen`, `close`, `backend`) is the
 * wrapped database's own.
 *
 * @example
 * let n = 0;
 * const db = countStatements(await openPglite(), (c) => (n += c.statements));
 * await db.query('select 1'); // n === 1
 */
export function countStatements(db: Database, onCount: (c: StatementCount) => void): Database {
  const one: StatementCount = { statements: 1, transactions: 0, roundTrips: 1 };
  const riding: StatementCount = { statements: 1, transactions: 0, roundTrips: 0 };
  const tx: StatementCount = { statements: 2, transactions: 1, roundTrips: 2 };
  // An `atCommit` statement goes with the COMMIT (no round trip, or PGlite call, of its own).
  const atCommit: StatementCount = { statements: 1, transactions: 0, roundTrips: 0 };
  const wrap = (q: Queryable, inTransaction = false): Queryable => {
    // A transaction's BEGIN rides with a first statement without parameters on both stores
    // (PGlite: also with one whose plan is prepared, counted here as a call of its own).
    let first = inTransaction;
    const w: Queryable = {
      query: (text, params) => {
        onCount(first && beginRidesWith(params) ? riding : one);
        first = false;
        return q.query(text, params);
      },
    };
    // A pipeline is one round trip for all its statements (none of its own when its
    // transaction's BEGIN rides with it).
    if (q.pipeline) {
      const inner = q.pipeline.bind(q);
      w.pipeline = (statements) => {
        onCount({ statements: statements.length, transactions: 0, roundTrips: first ? 0 : 1 });
        first = false;
        return inner(statements);
      };
    }
    // The last statement rides with the COMMIT, already counted with its transaction.
    if (q.commitWith) {
      const inner = q.commitWith.bind(q);
      w.commitWith = (statement) => {
        onCount(riding);
        first = false;
        return inner(statement);
      };
    }
    if (q.atCommit) {
      const inner = q.atCommit.bind(q);
      w.atCommit = (text) => {
        onCount(atCommit);
        inner(text);
      };
    }
    return w;
  };
  const direct = wrap(db);
  const counted: Database = {
    backend: db.backend,
    query: (text, params) => direct.query(text, params),
    transaction: (fn) => {
      onCount(tx);
      return db.transaction((t) => fn(wrap(t, true)));
    },
    close: () => db.close(),
    get priority() {
      return priority;
    },
  };
  // The priority lane is counted too (its own lane is itself).
  const priority = db.priority === db ? counted : countStatements(db.priority, onCount);
  if (db.listen) counted.listen = db.listen.bind(db);
  if (direct.pipeline) counted.pipeline = direct.pipeline.bind(direct);
  return counted;
}
