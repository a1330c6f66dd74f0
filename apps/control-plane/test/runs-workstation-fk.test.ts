import { submitRunRequestSchema } from '@runt/protocol';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as transitions from '../src/runs/transitions.js';
import { migratedDatabase } from './scheduler-fixtures.js';

/**
 * `runs.workstation_id` has no foreign key to `workstations` (migration cp_0107, issue 9): every
 * write of it takes the id from a workstation row the same statement or transaction read, and
 * runt never deletes workstations, so the key's per-run check (a `for key share` of the
 * workstation, run as a trigger) only cost CPU (docs/runs.md, _Claim on offer_).
 */
describe.each(TEST_BACKENDS)('runs.workstation_id without its foreign key on %s', (backend) => {
  let t: TestDatabase;

  beforeAll(async () => {
    t = await migratedDatabase(backend);
    await t.db.query(`insert into workstations (id, display_name) values ('ws_fk', 'ws_fk')`);
  });
  afterAll(async () => {
    await t?.dispose();
  });

  it('has no foreign key on runs, and a claim on offer runs no key check', async () => {
    const fks = await t.db.query<{ conname: string }>(
      `select conname from pg_constraint where conrelid = 'runs'::regclass and contype = 'f'`,
    );
    expect(fks.rows).toEqual([]);
    const { run } = await transitions.submit(
      t.db,
      submitRunRequestSchema.parse({ runtime: 'fake', command: ['true'] }),
    );
    const plan = await t.db.query<{ 'QUERY PLAN': string }>(
      `explain (analyze, costs off, timing off, summary off)
       update runs set status = 'accepted', workstation_id = 'ws_fk', offered_at = now(), accepted_at = now() where id = $1`,
      [run.id],
    );
    expect(plan.rows.map((r) => r['QUERY PLAN']).join('\n')).not.toMatch(/Trigger for constraint/);
    // The claim on offer (the bench's per-run placement) grants as before.
    const fresh = await transitions.submit(
      t.db,
      submitRunRequestSchema.parse({ runtime: 'fake', command: ['true'] }),
    );
    const grants = await transitions.claimOnOffer(t.db, [
      { id: fresh.run.id, ws: 'ws_fk', holder: 'ws_fk/r1', leaseMs: 30_000 },
    ]);
    expect(grants.map((g) => [g.run.id, g.run.status, g.run.workstation_id])).toEqual([
      [fresh.run.id, 'accepted', 'ws_fk'],
    ]);
  });
});
