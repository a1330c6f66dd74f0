import { describe, expect, it } from 'vitest';
import { migrate } from './migrate.js';
import { createTestDatabase, TEST_BACKENDS } from './testing.js';

describe.each(TEST_BACKENDS)('sql on %s', (backend) => {
  it('applies migrations once, in order, and transactions roll back on error', async () => {
    const t = await createTestDatabase(backend);
    try {
      const ms = [
        { id: 't_0002', sql: 'insert into t (id, n) values ($$b$$, 2);' },
        { id: 't_0001', sql: 'create table t (id text primary key, n bigint not null);\ninsert into t (id, n) values ($$a$$, 1);' },
      ];
      expect(await migrate(t.db, ms)).toEqual(['t_0001', 't_0002']);
      expect(await migrate(t.db, ms)).toEqual([]);
      const r = await t.db.query<{ id: string; n: number }>('select id, n from t order by id');
      expect(r.rows).toEqual([{ id: 'a', n: 1 }, { id: 'b', n: 2 }]);

      await expect(
        t.db.transaction(async (tx) => {
          await tx.query('insert into t (id, n) values ($1, $2)', ['c', 3]);
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      const after = await t.db.query('select id from t');
      expect(after.rows).toHaveLength(2);

      const upd = await t.db.query('update t set n = n + 1');
      expect(upd.rowCount).toBe(2);
    } finally {
      await t.dispose();
    }
  });
});

describe('pglite on a data directory', () => {
  it('runs with fsync on, and keeps committed rows across a reopen', async () => {
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { openPglite } = await import('./pglite.js');
    const dir = join(mkdtempSync(join(tmpdir(), 'runt-sql-')), 'db');
    const db = await openPglite({ dataDir: dir });
    expect((await db.query<{ fsync: string }>('show fsync')).rows[0]?.fsync).toBe('on');
    await db.query('create table k (v text)');
    await db.query("insert into k values ('kept')");
    await db.close();
    const again = await openPglite({ dataDir: dir });
    expect((await again.query('select v from k')).rows).toEqual([{ v: 'kept' }]);
    await again.close();
  });
});
