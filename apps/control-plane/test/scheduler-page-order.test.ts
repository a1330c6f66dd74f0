import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pageSql } from '../src/runs/scheduler.js';
import { addWorkstation, explainRowsRead, migratedDatabase } from './scheduler-fixtures.js';

// Issue 9: a page's runtime filter was `r.runtime in (select … from f)`, which the planner made a
// hash semi-join: the queue index's order was lost, so every page read and sorted every queued
// run to keep the first `page_limit` (2.0–3.9 ms at 5,000 queued, held under the scheduler's
// lock in a 10,000-run drain). As one array (`array[r.runtime] <@ array(…)`) the page reads the queue in
// index order and stops after the runs it places.
describe.each(TEST_BACKENDS)('a scheduling page over a long queue, on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase(backend);
    await addWorkstation(t.db, 'ws_a', 'fake', 25);
    await addWorkstation(t.db, 'ws_b', 'fake', 25);
    // 5,000 runs done, 5,000 queued behind them (a drain half way), statistics up to date
    await t.db.query(
      `insert into runs (id, status, runtime, command, env, max_attempts)
         select 'run_' || i, case when i <= 5000 then 'completed' else 'queued' end, 'fake', '["x"]'::jsonb, '{}'::jsonb, 1
           from generate_series(1, 10000) i`,
    );
    await t.db.query('analyze runs');
  });
  afterAll(async () => t?.dispose());

  it('reads the first runs of the queue in order, not every queued run', async () => {
    const read = await explainRowsRead(t.db, pageSql(true), [0, 200]);
    const page = await t.db.query<{ queued: Array<{ id: string }>; page_limit: number }>(
      pageSql(true),
      [0, 200],
    );
    expect(page.rows[0]!.page_limit).toBe(50);
    expect(page.rows[0]!.queued.map((q) => q.id)).toEqual(
      Array.from({ length: 50 }, (_, i) => `run_${5001 + i}`),
    );
    expect(read).toBeLessThan(500); // was 5,000+: every queued run, then a sort
  });
});
