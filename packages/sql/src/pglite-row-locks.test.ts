import { describe, expect, it } from 'vitest';
import { PlanCache, withoutRowLocks } from './plan-cache.js';
import { openPglite } from './pglite.js';

describe('PGlite takes no row locks (one connection: they keep nothing apart)', () => {
  it('drops a locking clause that ends its SELECT, and only that', () => {
    // The shapes the run path uses (transitions.ts, scheduler.ts, lease-store.ts, run-state.ts).
    expect(withoutRowLocks('select status from runs where id = $1 for update')).toBe(
      'select status from runs where id = $1',
    );
    expect(
      withoutRowLocks(
        'o as materialized (select r.id from runs r where x order by r.id for no key update of r), l as (…)',
      ),
    ).toBe('o as materialized (select r.id from runs r where x order by r.id), l as (…)');
    expect(
      withoutRowLocks(
        'q as (select 1 from runs order by position limit $1 for update skip locked\n), c as (',
      ),
    ).toBe('q as (select 1 from runs order by position limit $1\n), c as (');
    expect(withoutRowLocks('limit 1000\n  for update of w skip locked\n)')).toBe('limit 1000\n)');
    expect(withoutRowLocks('select * from leases where resource = $1 for share')).toBe(
      'select * from leases where resource = $1',
    );
    // Not at the end of its SELECT, or not a locking clause: left as written.
    expect(withoutRowLocks('select 1 from t for update limit 1')).toBe('select 1 from t for update limit 1');
    expect(withoutRowLocks(`select 'wait for update' as x`)).toBe(`select 'wait for update' as x`);
  });

  it('is what openPglite asks of its plan cache; a PlanCache keeps the locks unless told', () => {
    const text = 'select status from runs where id = $1 for update';
    const prepared = (c: PlanCache) => {
      c.statement(text, ['r']); // first sighting: sent as is
      return c.statement(text, ['r'])?.prepare;
    };
    expect(prepared(new PlanCache())).toMatch(/ as select status from runs where id = \$1 for update$/);
    expect(prepared(new PlanCache({ rowLocks: false }))).toMatch(
      / as select status from runs where id = \$1$/,
    );
  });

  it('runs a prepared statement without locking its rows, with the same answers', async () => {
    const db = await openPglite({ upkeep: false });
    try {
      await db.query(`create table jobs (id int primary key, status text not null)`);
      await db.query(`insert into jobs select g, 'queued' from generate_series(1, 10) g`);
      const claim = `select id, status from jobs where id = $1 for update skip locked`;
      // A row's xmax is the locker's transaction id once it was locked (0: never locked or updated).
      const xmax = async (id: number) =>
        (await db.query<{ x: string }>(`select xmax::text as x from jobs where id = ${id}`)).rows[0]!.x;
      // First sighting: sent as written (PlanCache prepares a text seen again), so it locks.
      const first = await db.transaction((tx) => tx.query(claim, [1]));
      expect(first.rows).toEqual([{ id: 1, status: 'queued' }]);
      expect(await xmax(1)).not.toBe('0');
      // Seen again: run from its prepared plan, which takes no lock.
      const again = await db.transaction((tx) => tx.query(claim, [2]));
      expect(again.rows).toEqual([{ id: 2, status: 'queued' }]);
      expect(await xmax(2)).toBe('0');
      const prepared = await db.query<{ statement: string }>(`select statement from pg_prepared_statements`);
      expect(prepared.rows.map((r) => r.statement).join('\n')).not.toMatch(/for update/i);
    } finally {
      await db.close();
    }
  });
});
