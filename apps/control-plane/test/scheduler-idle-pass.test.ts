import { leaseMigrations } from '@runt/leases';
import { pairingMigrations } from '@runt/pairing';
import { submitRunRequestSchema } from '@runt/protocol';
import { migrate } from '@runt/sql';
import { createTestDatabase, TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlPlaneMigrations } from '../src/migrations.js';
import { pageSql } from '../src/runs/scheduler.js';
import * as transitions from '../src/runs/transitions.js';

interface PlanNode {
  'Relation Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  Plans?: PlanNode[];
}

/** Rows the plan read from `tables` (rows × loops of every node scanning one of them). */
function rowsRead(node: PlanNode, tables: string[]): number {
  const own =
    node['Relation Name'] && tables.includes(node['Relation Name'])
      ? (node['Actual Rows'] ?? 0) * (node['Actual Loops'] ?? 0)
      : 0;
  return own + (node.Plans ?? []).reduce((s, p) => s + rowsRead(p, tables), 0);
}

// Issue 9 (links): a scheduling pass over an empty queue — the tick, and the pass each window of
// link registrations asks for — walked every listening workstation twice (with its credential and
// used slots): 0.3–0.9 s of database time per pass at ~13,000 workstations, most of the
// database's CPU per link when 19,800 agents re-linked. Now it reads none until a run is queued.
describe.each(TEST_BACKENDS)('a scheduling page over an empty queue, on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase(backend);
    await migrate(t.db, [...pairingMigrations, ...leaseMigrations, ...controlPlaneMigrations]);
    // 300 listening, linked workstations, each with a live credential and a free slot.
    await t.db.query(
      `insert into workstations (id, display_name, listening, last_seen_at, runtimes, cpu_count, link_state)
         select 'ws_' || i, 'ws', true, now(), '["rt"]'::jsonb, 1, 'connected' from generate_series(1, 300) i`,
    );
    await t.db.query(
      `insert into credentials (id, kind, token_hash, workstation_id)
         select 'cred_' || i, 'workstation', 'hash_' || i, 'ws_' || i from generate_series(1, 300) i`,
    );
  });
  afterAll(async () => t?.dispose());

  const page = async () => {
    const r = await t.db.query<{ 'QUERY PLAN': unknown }>(
      `explain (analyze, format json) ${pageSql(true)}`,
      [0, 200],
    );
    const json = r.rows[0]!['QUERY PLAN'];
    const plan = (typeof json === 'string' ? JSON.parse(json) : json) as Array<{ Plan: PlanNode }>;
    const row = await t.db.query<{ any_free: boolean; free_ws: number; queued: unknown[] }>(
      pageSql(true),
      [0, 200],
    );
    return { read: rowsRead(plan[0]!.Plan, ['workstations', 'credentials']), row: row.rows[0]! };
  };

  it('reads no workstation, and says some may be free', async () => {
    const { read, row } = await page();
    expect(read).toBe(0); // was ≥ 600: every workstation and credential, twice
    expect(row.any_free).toBe(true);
    expect(row.queued).toEqual([]);
  });

  it('reads the fleet once a run is queued', async () => {
    await transitions.submit(t.db, submitRunRequestSchema.parse({ runtime: 'rt', command: ['x'] }));
    const { read, row } = await page();
    expect(read).toBeGreaterThanOrEqual(300);
    expect(row.any_free).toBe(true);
    expect(row.free_ws).toBe(300);
    expect(row.queued).toHaveLength(1);
  });
});
