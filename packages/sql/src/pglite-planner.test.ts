import { describe, expect, it } from 'vitest';
import { openPglite } from './pglite.js';

describe("PGlite's planner prices a page read as in memory", () => {
  it('joins a batch of ids to a large table by its primary key, not a hash of a sequential scan', async () => {
    const db = await openPglite({ upkeep: false });
    try {
      // The shape of the claim on offer: a JSON batch of run ids joined to `runs` and filtered on status.
      await db.query(`create table runs (id text primary key, status text not null, pad text not null)`);
      await db.query(
        `insert into runs select 'run_' || g, case when g % 2 = 0 then 'queued' else 'completed' end, repeat('x', 200)
           from generate_series(1, 10000) g`,
      );
      await db.query('analyze runs');
      const ids = JSON.stringify(Array.from({ length: 25 }, (_, i) => ({ id: `run_${2 * i + 2}` })));
      const plan = await db.query<{ 'QUERY PLAN': string }>(
        `explain with p as (select * from jsonb_to_recordset($1::jsonb) as p(id text))
         select r.id from p join runs r on r.id = p.id where r.status = 'queued'`,
        [ids],
      );
      const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
      expect(text).toContain('Index Scan using runs_pkey on runs r');
      expect(text).not.toContain('Seq Scan on runs');
      const found = await db.query(
        `with p as (select * from jsonb_to_recordset($1::jsonb) as p(id text))
         select r.id from p join runs r on r.id = p.id where r.status = 'queued'`,
        [ids],
      );
      expect(found.rows).toHaveLength(25);
    } finally {
      await db.close();
    }
  });
});
