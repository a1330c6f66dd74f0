import { describe, expect, it } from 'vitest';
import { countStatements } from './counting.js';
import { createTestDatabase, TEST_BACKENDS } from './testing.js';

describe.each(TEST_BACKENDS)('countStatements on %s', (backend) => {
  it('counts each query, and BEGIN + COMMIT of each transaction', async () => {
    const t = await createTestDatabase(backend);
    try {
      const n = { statements: 0, transactions: 0 };
      let roundTrips = 0;
      const db = countStatements(t.db, (c) => {
        n.statements += c.statements;
        n.transactions += c.transactions;
        roundTrips += c.roundTrips;
      });
      expect(db.backend).toBe(backend);
      expect((await db.query<{ v: number }>('select 1 as v')).rows).toEqual([{ v: 1 }]);
      expect(n).toEqual({ statements: 1, transactions: 0 });
      await db.transaction(async (tx) => {
        await tx.query('select 1');
        await tx.query('select 2');
      });
      expect(n).toEqual({ statements: 5, transactions: 1 });
      // BEGIN rides with a parameter-less first statement (PGlite: in the same call).
      expect(roundTrips).toBe(4);
      await db.transaction((tx) => tx.query('select $1::int', [1]));
      expect(n).toEqual({ statements: 8, transactions: 2 });
      expect(roundTrips).toBe(7);
      await expect(
        db.transaction(async (tx) => {
          await tx.query('select 1');
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      expect(n).toEqual({ statements: 11, transactions: 3 });
      expect(Boolean(db.listen)).toBe(backend === 'postgres');
      // The priority lane is there and counted too; its lane is itself.
      expect((await db.priority.query<{ v: number }>('select 3 as v')).rows).toEqual([{ v: 3 }]);
      expect(n).toEqual({ statements: 12, transactions: 3 });
      expect(db.priority.priority).toBe(db.priority);
    } finally {
      await t.dispose();
    }
  });
});
