import type { Database, Queryable } from '@runt/sql';

/** Time spent in statements of one shape (the first words of its text, whitespace folded). */
export interface StatementTime {
  shape: string;
  count: number;
  totalMs: number;
}

/**
 * Wraps a `Database` so each statement's time (from the call to its answer, queueing for the
 * connection included) is added to its shape while `on` is true: where a page's time goes,
 * and what else (a scheduler pass, the sweeper) shared the database meanwhile. Transactions'
 * statements are timed one by one; `priority` is timed the same way.
 *
 * @example
 * const t = timeStatements(db); t.on = true; await render(); console.log(t.top(5)); t.reset();
 */
export function timeStatements(db: Database): {
  db: Database;
  on: boolean;
  top(n: number): StatementTime[];
  reset(): void;
} {
  const times = new Map<string, StatementTime>();
  const state = {
    on: false,
    top: (n: number) => [...times.values()].sort((a, b) => b.totalMs - a.totalMs).slice(0, n),
    reset: () => times.clear(),
  };
  const note = (text: string, ms: number) => {
    if (!state.on) return;
    const shape = text.replace(/\s+/g, ' ').trim().slice(0, 90);
    const t = times.get(shape) ?? { shape, count: 0, totalMs: 0 };
    t.count++;
    t.totalMs += ms;
    times.set(shape, t);
  };
  const wrap = (q: Queryable): Queryable => ({
    query: async (text, params) => {
      const t0 = performance.now();
      try {
        return await q.query(text, params);
      } finally {
        note(text, performance.now() - t0);
      }
    },
  });
  const wrapDb = (inner: Database): Database => {
    const direct = wrap(inner);
    const out: Database = {
      backend: inner.backend,
      query: (text, params) => direct.query(text, params),
      transaction: (fn) => inner.transaction((t) => fn(wrap(t))),
      close: () => inner.close(),
      get priority() {
        return priority;
      },
    };
    const priority: Database = inner.priority === inner ? out : wrapDb(inner.priority);
    if (inner.listen) out.listen = inner.listen.bind(inner);
    return out;
  };
  return Object.assign(state, { db: wrapDb(db) });
}
