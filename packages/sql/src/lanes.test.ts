import { describe, expect, it } from 'vitest';
import { LaneGate } from './lanes.js';
import { createTestDatabase, TEST_BACKENDS } from './testing.js';

describe('LaneGate', () => {
  it('runs one at a time, and a waiting priority operation goes before every waiting normal one', async () => {
    const gate = new LaneGate();
    const order: string[] = [];
    let inside = 0;
    const op = (name: string) => async () => {
      inside++;
      expect(inside).toBe(1);
      order.push(name);
      await new Promise((r) => setTimeout(r, 5));
      inside--;
    };
    const all = [
      gate.run('normal', op('n1')),
      gate.run('normal', op('n2')),
      gate.run('normal', op('n3')),
      gate.run('priority', op('p1')),
      gate.run('priority', op('p2')),
    ];
    expect(gate.waiting).toEqual({ priority: 2, normal: 2 });
    await Promise.all(all);
    expect(order).toEqual(['n1', 'p1', 'p2', 'n2', 'n3']);
    // A failed operation hands the turn on too.
    await expect(gate.run('normal', () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await gate.run('normal', () => Promise.resolve(7))).toBe(7);
  });
});

describe.each(TEST_BACKENDS)('the priority lane on %s', (backend) => {
  it('does not wait behind queued work (issue 8, defect 10)', async () => {
    const t = await createTestDatabase(backend);
    try {
      // A backlog of slow work: 40 transactions; PGlite runs them one by one, Postgres 10 at a
      // time (its pool), so the backlog takes 4 rounds there.
      const sleep = backend === 'pglite' ? 0.05 : 0.3;
      let done = 0;
      const backlog = Array.from({ length: 40 }, () =>
        t.db
          .transaction(async (tx) => {
            await tx.query('select pg_sleep($1)', [sleep]);
          })
          .then(() => ++done),
      );
      await new Promise((r) => setTimeout(r, 20));
      const r = await t.db.priority.query<{ n: number }>('select 1 as n');
      const doneWhenAnswered = done;
      // Transactions work on the lane too.
      const tx = await t.db.priority.transaction((q) => q.query<{ n: number }>('select 2 as n'));
      await Promise.all(backlog);
      expect(r.rows).toEqual([{ n: 1 }]);
      expect(tx.rows).toEqual([{ n: 2 }]);
      expect(t.db.priority.priority).toBe(t.db.priority);
      // In the normal lane it would have waited for all 40 (PGlite) or 3 rounds of 10 (Postgres).
      expect(doneWhenAnswered).toBeLessThan(20);
    } finally {
      await t.dispose();
    }
  });
});
