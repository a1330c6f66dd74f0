import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratedDatabase } from './scheduler-fixtures.js';

/**
 * `run_events` has no foreign key to `runs` (migration cp_0106, issue 9): every event write
 * takes its run from a row of `runs` it holds in the same statement, so the key's per-row check
 * only cost CPU (docs/runs.md, _Events_). Deleting runs still deletes their events.
 */
describe.each(TEST_BACKENDS)('run_events without its foreign key on %s', (backend) => {
  let t: TestDatabase;

  beforeAll(async () => {
    t = await migratedDatabase(backend);
  });
  afterAll(async () => {
    await t?.dispose();
  });

  it('writes an event without a foreign-key check', async () => {
    const fks = await t.db.query<{ conname: string }>(
      `select conname from pg_constraint where conrelid = 'run_events'::regclass and contype = 'f'`,
    );
    expect(fks.rows).toEqual([]);
    await t.db.query(`insert into runs (id, status, runtime) values ('run_fk_1', 'queued', 'fake')`);
    const plan = await t.db.query<{ 'QUERY PLAN': string }>(
      `explain (analyze, costs off, timing off, summary off)
       insert into run_events (run_id, seq, type, payload) select id, 1, 'log', '{}' from runs where id = 'run_fk_1'`,
    );
    expect(plan.rows.map((r) => r['QUERY PLAN']).join('\n')).not.toMatch(/Trigger for constraint/);
  });

  it('deletes the events of deleted runs, in one statement of many runs, and keeps the others', async () => {
    await t.db.query(
      `insert into runs (id, status, runtime) select 'run_del_' || g, 'completed', 'fake' from generate_series(1, 3) g`,
    );
    await t.db.query(
      `insert into run_events (run_id, seq, type, payload)
       select 'run_del_' || g, s, 'log', '{}' from generate_series(1, 3) g, generate_series(1, 2) s`,
    );
    await t.db.query(`delete from runs where id in ('run_del_1', 'run_del_2')`);
    const left = await t.db.query<{ run_id: string; n: number }>(
      `select run_id, count(*)::int as n from run_events where run_id like 'run_del_%' group by run_id order by run_id`,
    );
    expect(left.rows).toEqual([{ run_id: 'run_del_3', n: 2 }]);
  });
});
