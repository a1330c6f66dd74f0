import { describe, expect, it } from 'vitest';
import { migrate } from './migrate.js';
import { sqlLiteral } from './sql.js';
import { createTestDatabase, TEST_BACKENDS } from './testing.js';

describe.each(TEST_BACKENDS)('sql on %s', (backend) => {
  it('applies migrations once, in order, and transactions roll back on error', async () => {
    const t = await createTestDatabase(backend);
    try {
      const ms = [
        { id: 't_0002', sql: 'insert into t (id, n) values ($$b$$, 2);' },
        {
          id: 't_0001',
          sql: 'create table t (id text primary key, n bigint not null);\ninsert into t (id, n) values ($$a$$, 1);',
        },
      ];
      expect(await migrate(t.db, ms)).toEqual(['t_0001', 't_0002']);
      expect(await migrate(t.db, ms)).toEqual([]);
      const r = await t.db.query<{ id: string; n: number }>('select id, n from t order by id');
      expect(r.rows).toEqual([
        { id: 'a', n: 1 },
        { id: 'b', n: 2 },
      ]);

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

  it('runs atCommit statements when the transaction commits, never when it throws, and rolls back when one fails', async () => {
    const t = await createTestDatabase(backend);
    try {
      await t.db.query('create table c (id serial primary key, v text)');
      const awkward = `it's a "quote" \\ and \\n, é, ${'x'.repeat(300)}`;
      await t.db.transaction(async (tx) => {
        await tx.query('insert into c (v) values ($1)', ['first']);
        tx.atCommit!(`insert into c (v) values (${sqlLiteral(awkward)})`);
        tx.atCommit!(`insert into c (v) values ('third')`);
        await tx.query('insert into c (v) values ($1)', ['second']); // still in the transaction
      });
      expect((await t.db.query<{ v: string }>('select v from c order by id')).rows.map((r) => r.v)).toEqual([
        'first',
        'second',
        awkward,
        'third',
      ]);
      // Only atCommit statements: the transaction is still one.
      await t.db.transaction(async (tx) => tx.atCommit!(`insert into c (v) values ('alone')`));
      await expect(
        t.db.transaction(async (tx) => {
          tx.atCommit!(`insert into c (v) values ('never')`);
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      await expect(
        t.db.transaction(async (tx) => {
          await tx.query(`insert into c (v) values ('rolled back')`);
          tx.atCommit!('select 1/0');
        }),
      ).rejects.toThrow(/division by zero/);
      const all = (await t.db.query<{ v: string }>('select v from c')).rows.map((r) => r.v);
      expect(all).toContain('alone');
      expect(all).not.toContain('never');
      expect(all).not.toContain('rolled back');
      expect(all).toHaveLength(5);
      // Outside a transaction there is nothing to commit with.
      expect(t.db.atCommit).toBeUndefined();
    } finally {
      await t.dispose();
    }
  });

  // PGlite: a transaction's pipeline and commitWith travel in one call each once their plans are
  // prepared (a statement's second sighting), so the rounds below go through both paths.
  it("sends a transaction's pipeline and its last statement with the COMMIT, all or nothing", async () => {
    const t = await createTestDatabase(backend);
    try {
      await t.db.query('create table p (id int primary key, v text)');
      const insert = 'insert into p (id, v) values ($1, $2) returning id';
      const count = 'select count(*)::int as n from p where id >= $1';
      for (let round = 0; round < 3; round++) {
        const base = round * 10;
        const seen: unknown[][] = [];
        const last = await t.db.transaction(async (tx) => {
          const r = await tx.pipeline!<{ n: number }>([
            { text: insert, params: [base + 1, 'a'], onResult: (x) => seen.push(x.rows) },
            { text: insert, params: [base + 2, "it's"], onResult: (x) => seen.push(x.rows) },
            { text: count, params: [base] },
          ]);
          expect(r.rows).toEqual([{ n: 2 }]);
          tx.atCommit!(`insert into p (id, v) values (${base + 4}, 'at commit')`);
          return tx.commitWith!<{ id: number }>({ text: insert, params: [base + 3, 'last'] });
        });
        expect(seen).toEqual([[{ id: base + 1 }], [{ id: base + 2 }]]);
        expect(last.rows).toEqual([{ id: base + 3 }]);
        // A failing statement of a pipeline, or of commitWith, leaves nothing of the transaction.
        await expect(
          t.db.transaction((tx) =>
            tx.pipeline!([
              { text: insert, params: [base + 5, 'rolled back'] },
              { text: insert, params: [base + 1, 'duplicate'] },
            ]),
          ),
        ).rejects.toThrow(/duplicate key/);
        await expect(
          t.db.transaction(async (tx) => {
            await tx.query(insert, [base + 6, 'rolled back']);
            return tx.commitWith!({ text: insert, params: [base + 2, 'duplicate'] });
          }),
        ).rejects.toThrow(/duplicate key/);
      }
      const ids = (await t.db.query<{ id: number }>('select id from p order by id')).rows.map((r) => r.id);
      expect(ids).toEqual([1, 2, 3, 4, 11, 12, 13, 14, 21, 22, 23, 24]);
      // Nothing left open: a statement outside a transaction commits on its own.
      await t.db.query(insert, [100, 'alone']);
      expect((await t.db.query(count, [100])).rows).toEqual([{ n: 1 }]);
    } finally {
      await t.dispose();
    }
  });

  // PGlite's `affectedRows` adds up the statements of one call; a pipeline's statements travel in
  // one call once prepared, so each result must carry its own statement's count (as on Postgres).
  it("gives each statement of a transaction's pipeline its own row count", async () => {
    const t = await createTestDatabase(backend);
    try {
      await t.db.query('create table c (id int primary key, v text)');
      await t.db.query("insert into c values (1, 'a'), (2, 'a'), (3, 'a')");
      for (let round = 0; round < 3; round++) {
        const counts: number[] = [];
        const last = await t.db.transaction((tx) =>
          tx.pipeline!([
            {
              text: 'update c set v = $1 where id <= $2',
              params: [`r${round}`, 2],
              onResult: (x) => counts.push(x.rowCount ?? -1),
            },
            { text: 'update c set v = $1 where id = $2', params: [`s${round}`, 3] },
          ]),
        );
        expect({ round, first: counts[0], last: last.rowCount }).toEqual({ round, first: 2, last: 1 });
      }
    } finally {
      await t.dispose();
    }
  });
});

describe('sqlLiteral', () => {
  it('quotes so that the literal reads back as the string', () => {
    expect(sqlLiteral("it's")).toBe("'it''s'");
    expect(sqlLiteral('a\\b')).toBe(" E'a\\\\b'");
    expect(() => sqlLiteral('a\u0000b')).toThrow(/NUL/);
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

describe('listen on postgres', () => {
  it('delivers notifications on a dedicated connection and reports its loss once', async () => {
    const t = await createTestDatabase('postgres');
    try {
      const got: string[] = [];
      let lost = 0;
      const l = await t.db.listen!(
        'runt_test',
        (p) => got.push(p),
        () => lost++,
      );
      await t.db.query(`select pg_notify('runt_test', 'a')`);
      await t.db.transaction(async (tx) => {
        await tx.query(`select pg_notify('runt_test', 'b')`);
      });
      await expect.poll(() => got, { timeout: 2000 }).toEqual(['a', 'b']);
      await t.db.query(
        `select pg_terminate_backend(pid) from pg_stat_activity where query ilike 'listen%' and datname = current_database()`,
      );
      await expect.poll(() => lost, { timeout: 2000 }).toBe(1);
      await l.close();
      const again = await t.db.listen!(
        'runt_test',
        (p) => got.push(p),
        () => lost++,
      );
      await t.db.query(`select pg_notify('runt_test', 'c')`);
      await expect.poll(() => got, { timeout: 2000 }).toEqual(['a', 'b', 'c']);
      await again.close();
      expect(lost).toBe(1);
    } finally {
      await t.dispose();
    }
  });

  it('is not offered by PGlite', async () => {
    const t = await createTestDatabase('pglite');
    expect(t.db.listen).toBeUndefined();
    await t.dispose();
  });
});
