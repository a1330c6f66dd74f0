import { leaseMigrations } from '@runt/leases';
import { pairingMigrations } from '@runt/pairing';
import { migrate } from '@runt/sql';
import { createTestDatabase, TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlPlaneMigrations } from '../src/migrations.js';

/**
 * Every status change of a run writes an entry into each index of `runs` whose predicate holds
 * (issue 9): the table keeps only indexes some read needs, and the reads of active runs per
 * workstation go through `runs_workstation_status_idx`.
 */
describe.each(TEST_BACKENDS)('the indexes of runs on %s', (backend) => {
  let t: TestDatabase;

  beforeAll(async () => {
    t = await createTestDatabase(backend);
    await migrate(t.db, [...pairingMigrations, ...leaseMigrations, ...controlPlaneMigrations]);
  });
  afterAll(async () => {
    await t?.dispose();
  });

  it('has no index covered by another one', async () => {
    const names = (
      await t.db.query<{ indexname: string }>(
        `select indexname from pg_indexes where tablename = 'runs' order by indexname`,
      )
    ).rows.map((r) => r.indexname);
    expect(names).toEqual([
      'runs_idempotency_key_idx',
      'runs_offered_idx',
      'runs_pkey',
      'runs_position_key',
      'runs_queued_idx',
      'runs_runtime_status_idx',
      'runs_status_position_idx',
      'runs_workstation_position_idx',
      'runs_workstation_status_idx',
    ]);
  });

  it('counts the active runs of a workstation through runs_workstation_status_idx', async () => {
    // An empty table: no sequential scan, so the plan shows the index the planner would pick.
    const plan = await t.db.transaction(async (tx) => {
      await tx.query(`set local enable_seqscan = off`);
      const r = await tx.query<{ 'QUERY PLAN': string }>(
        `explain select count(*) from runs where workstation_id = 'ws_1' and status in ('offered', 'accepted', 'running')`,
      );
      return r.rows.map((x) => x['QUERY PLAN']).join('\n');
    });
    expect(plan).toContain('runs_workstation_status_idx');
  });
});
