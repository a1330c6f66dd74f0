import type { Database, Queryable } from './sql.js';

/** What {@link countStatements} reports for each statement sent. */
export interface StatementCount {
  /** Statements sent: every `query`, plus `BEGIN` and `COMMIT`/`ROLLBACK` of each transaction. */
  statements: number;
  /** Transactions opened. */
  transactions: number;
}

/**
 * Wraps a `Database` so every statement it sends is counted: each `query` (inside a transaction
 * or not) is one, a transaction adds two (its `BEGIN` and `COMMIT`/`ROLLBACK`). `onCount` gets
 * the increments as they happen (`{ statements: 1, transactions: 0 }` per query,
 * `{ statements: 2, transactions: 1 }` per transaction), so a metrics counter can add them up.
 * `priority` is counted the same way. Everything else (`listen`, `close`, `backend`) is the
 * wrapped database's own.
 *
 * @example
 * let n = 0;
 * const db = countStatements(await openPglite(), (c) => (n += c.statements));
 * await db.query('select 1'); // n === 1
 */
export function countStatements(db: Database, onCount: (c: StatementCount) => void): Database {
  const one: StatementCount = { statements: 1, transactions: 0 };
  const tx: StatementCount = { statements: 2, transactions: 1 };
  const wrap = (q: Queryable): Queryable => ({
    query: (text, params) => {
      onCount(one);
      return q.query(text, params);
    },
  });
  const direct = wrap(db);
  const counted: Database = {
    backend: db.backend,
    query: (text, params) => direct.query(text, params),
    transaction: (fn) => {
      onCount(tx);
      return db.transaction((t) => fn(wrap(t)));
    },
    close: () => db.close(),
    get priority() {
      return priority;
    },
  };
  // The priority lane is counted too (its own lane is itself).
  const priority = db.priority === db ? counted : countStatements(db.priority, onCount);
  if (db.listen) counted.listen = db.listen.bind(db);
  return counted;
}
