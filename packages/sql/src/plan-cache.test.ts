import { describe, expect, it } from 'vitest';
import { openPglite } from './pglite.js';
import type { Database } from './sql.js';

/** The prepared statements of PGlite's connection whose text holds `like`, with their use counts. */
async function prepared(db: Database, like: string) {
  const r = await db.query<{ name: string; uses: number }>(
    `select name, (generic_plans + custom_plans)::int as uses from pg_prepared_statements where statement like '%' || $1 || '%'`,
    [like],
  );
  return r.rows;
}

describe('PGlite plans a statement sent again once (issue 9)', () => {
  it('runs a repeated statement from one prepared plan, with the same answers as the plain one', async () => {
    const db = await openPglite();
    try {
      await db.query(`create table t (id int primary key, s text, j jsonb, b boolean, n bigint)`);
      const insert = `insert into t (id, s, j, b, n) values ($1, $2, $3::jsonb, $4, $5) returning id, s, j, b, n`;
      const answers = [];
      // Quotes, backslashes, JSON, null, booleans, bigints: each read by the parameter's type.
      for (const [i, s] of ["it's", 'back\\slash', null, 'plain'].entries())
        answers.push(await db.query(insert, [i, s, JSON.stringify({ k: s }), i % 2 === 0, 2n ** 40n]));
      expect(answers.map((a) => a.rows[0])).toEqual([
        { id: 0, s: "it's", j: { k: "it's" }, b: true, n: 2 ** 40 },
        { id: 1, s: 'back\\slash', j: { k: 'back\\slash' }, b: false, n: 2 ** 40 },
        { id: 2, s: null, j: { k: null }, b: true, n: 2 ** 40 },
        { id: 3, s: 'plain', j: { k: 'plain' }, b: false, n: 2 ** 40 },
      ]);
      expect(answers.every((a) => a.rowCount === 1)).toBe(true);
      // The first went as sent; the three after it ran from one prepared statement.
      expect(await prepared(db, 'insert into t')).toEqual([{ name: expect.any(String), uses: 3 }]);

      const update = `update t set s = 'x' where id >= $1`;
      expect((await db.query(update, [2])).rowCount).toBe(2);
      expect((await db.query(update, [1])).rowCount).toBe(3);
      const select = `select id from t where id >= $1 order by id`;
      for (let i = 0; i < 3; i++) expect((await db.query(select, [2])).rows).toEqual([{ id: 2 }, { id: 3 }]);

      // An error on the prepared path is the statement's own, and the plan stays usable.
      await expect(db.query(insert, [0, 'dup', '{}', true, 1])).rejects.toMatchObject({ code: '23505' });
      expect((await db.query(insert, [4, 'again', '{}', true, 1])).rows).toHaveLength(1);
      expect(await prepared(db, 'insert into t')).toEqual([{ name: expect.any(String), uses: 5 }]);

      // A parameter that is no plain value (an array) goes as sent.
      const any = `select count(*)::int as n from t where id = any($1::int[])`;
      for (let i = 0; i < 3; i++) expect((await db.query(any, [[1, 2]])).rows).toEqual([{ n: 2 }]);
      expect(await prepared(db, 'any(')).toEqual([]);
    } finally {
      await db.close();
    }
  });

  it('keeps a statement prepared inside a transaction that rolled back', async () => {
    const db = await openPglite();
    try {
      await db.query(`create table t (id int primary key)`);
      const insert = `insert into t (id) values ($1)`;
      await db.query(insert, [1]);
      await expect(
        db.transaction(async (tx) => {
          await tx.query(insert, [2]); // prepared here
          throw new Error('roll back');
        }),
      ).rejects.toThrow('roll back');
      await db.query(insert, [3]);
      expect((await db.query(`select id from t order by id`)).rows).toEqual([{ id: 1 }, { id: 3 }]);
      expect(await prepared(db, 'insert into t')).toEqual([{ name: expect.any(String), uses: 2 }]);
    } finally {
      await db.close();
    }
  });

  it('plans again after maxUses executions or maxAgeMs, and keeps at most maxStatements', async () => {
    let now = 0;
    const db = await openPglite({ plans: { maxUses: 3, maxAgeMs: 1_000, maxStatements: 2, now: () => now } });
    try {
      const a = `select 1 as a where $1::int > 0`;
      const names = new Set<string>();
      for (let i = 0; i < 8; i++) {
        await db.query(a, [1]);
        for (const p of await prepared(db, 'as a where')) names.add(p.name);
      }
      // 7 prepared executions, 3 per plan: planned 3 times, the old plans dropped.
      expect(names.size).toBe(3);
      expect(await prepared(db, 'as a where')).toHaveLength(1);
      const before = (await prepared(db, 'as a where'))[0]!.name;
      now += 1_000;
      await db.query(a, [1]);
      expect((await prepared(db, 'as a where'))[0]!.name).not.toBe(before);

      // A third repeated statement drops the least recently used one (the lookup above is one).
      for (const text of [`select 2 as b`, `select 3 as c`]) for (let i = 0; i < 2; i++) await db.query(text);
      const all = await db.query<{ n: number }>(`select count(*)::int as n from pg_prepared_statements`);
      expect(all.rows[0]!.n).toBeLessThanOrEqual(2);
    } finally {
      await db.close();
    }
  });
});
