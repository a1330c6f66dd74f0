import type { Queryable } from '@runt/sql';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimedOffers, claimMany, claimOnOffer, offer } from '../src/runs/transitions.js';
import { addWorkstation, migratedDatabase } from './scheduler-fixtures.js';

interface PlanNode {
  'Relation Name'?: string;
  'Actual Loops'?: number;
  Plans?: PlanNode[];
}

/** How many times the plan started a scan of `table` (the loops of every node reading it). */
function scansOf(node: PlanNode, table: string): number {
  const own = node['Relation Name'] === table ? (node['Actual Loops'] ?? 0) : 0;
  return own + (node.Plans ?? []).reduce((n, p) => n + scansOf(p, table), 0);
}

const picks = (from: number, n: number) =>
  Array.from({ length: n }, (_, k) => ({
    id: `run_${from + k}`,
    ws: 'ws_1',
    holder: 'ws_1/r1',
    leaseMs: 30_000,
  }));

/**
 * The plan of the statement `send` issues, run under EXPLAIN ANALYZE in `db` and rolled back;
 * `inside` reads what it did before the rollback.
 */
async function planOf(
  db: TestDatabase['db'],
  send: (q: Queryable) => Promise<unknown>,
  inside?: (tx: Queryable) => Promise<void>,
): Promise<PlanNode> {
  let sent: { text: string; params: unknown[] | undefined } | undefined;
  const recording: Queryable = {
    query: async (text, params) => {
      sent = { text, params };
      return { rows: [], rowCount: 0 };
    },
  };
  await send(recording);
  const rolledBack = new Error('rolled back');
  let plan: PlanNode | undefined;
  await db
    .transaction(async (tx) => {
      const r = await tx.query<{ 'QUERY PLAN': unknown }>(
        `explain (analyze, format json) ${sent!.text}`,
        sent!.params,
      );
      const json = r.rows[0]!['QUERY PLAN'];
      plan = ((typeof json === 'string' ? JSON.parse(json) : json) as Array<{ Plan: PlanNode }>)[0]!.Plan;
      await inside?.(tx);
      throw rolledBack;
    })
    .catch((e: unknown) => {
      if (e !== rolledBack) throw e;
    });
  return plan!;
}

// Issue 9: a claim on offer answers whether each run has a pending command (the claim answer's
// `pending_commands`) from one lookup of run_commands for the whole page, not a scan started
// again per claimed run (on PGlite each also an fstat of the table's file).
describe.each(TEST_BACKENDS)('claim on offer and pending commands on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase(backend);
    await addWorkstation(t.db, 'ws_1', 'fake', 100);
    await t.db.query(`insert into runs (id, status, runtime, image, command, env, max_attempts)
      select 'run_' || g, 'queued', 'fake', 'img', '["x"]'::jsonb, '{}'::jsonb, 1 from generate_series(1, 50) g`);
    await t.db.query(`insert into run_commands (id, run_id, seq, payload, state) values
      ('cmd_1', 'run_3', 1, '{}', 'pending'), ('cmd_2', 'run_4', 1, '{}', 'acked'), ('cmd_3', 'run_40', 1, '{}', 'pending')`);
  });
  afterAll(async () => t?.dispose());

  it('marks exactly the claimed runs with a pending command', async () => {
    const grants = await t.db.transaction((tx) => claimOnOffer(tx, picks(1, 25)));
    expect(grants).toHaveLength(25);
    expect(grants.filter((g) => g.pendingCommands).map((g) => g.run.id)).toEqual(['run_3']);
  });

  it('looks run_commands up once for a page of 25 claims, not once per run', async () => {
    // the statement as claimOnOffer sends it, then executed under EXPLAIN ANALYZE (rolled back)
    let pending: unknown;
    const plan = await planOf(
      t.db,
      (q) => claimOnOffer(q, picks(26, 25)),
      async (tx) => {
        const r = await tx.query<{ n: number }>(
          `select count(*)::int as n from runs where status = 'accepted' and id = 'run_40'`,
        );
        pending = r.rows[0]!.n;
      },
    );
    expect(pending).toBe(1); // the EXPLAIN ANALYZE claimed them
    expect(scansOf(plan, 'run_commands')).toBe(1);
  });
});

// The same one lookup answers a claim (claimMany) and a re-registration's re-send (claimedOffers).
describe.each(TEST_BACKENDS)('claim, re-send and pending commands on %s', (backend) => {
  let t: TestDatabase;
  const ids = Array.from({ length: 25 }, (_, k) => `run_c${k + 10}`);
  beforeAll(async () => {
    t = await migratedDatabase(backend);
    await addWorkstation(t.db, 'ws_2', 'fake', 100);
    await t.db.query(
      `insert into runs (id, status, runtime, image, command, env, max_attempts)
       select id, 'queued', 'fake', 'img', '["x"]'::jsonb, '{}'::jsonb, 1 from unnest($1::text[]) id`,
      [ids],
    );
    await t.db.query(`insert into run_commands (id, run_id, seq, payload, state) values
      ('cmd_c1', 'run_c12', 1, '{}', 'pending'), ('cmd_c2', 'run_c13', 1, '{}', 'acked')`);
    await offer(
      t.db,
      ids.map((id) => ({ id, ws: 'ws_2' })),
    );
  });
  afterAll(async () => t?.dispose());

  it('a claim looks run_commands up once for 25 runs and marks the one with a pending command', async () => {
    const grants = await claimMany(t.db, ids, 'ws_2', 'ws_2/r1', 30_000);
    expect(grants.size).toBe(25);
    expect([...grants.values()].filter((g) => g.pendingCommands).map((g) => g.run.id)).toEqual(['run_c12']);
    // the same holder's claim again (it keeps its leases), planned and rolled back
    const plan = await planOf(t.db, (q) => claimMany(q, ids, 'ws_2', 'ws_2/r1', 30_000));
    expect(scansOf(plan, 'run_commands')).toBe(1);
  });

  it('a re-send looks run_commands up once for 25 runs and marks the one with a pending command', async () => {
    const links = [{ ws: 'ws_2', holder: 'ws_2/r1' }];
    const plan = await planOf(t.db, (q) => claimedOffers(q, links));
    expect(scansOf(plan, 'run_commands')).toBe(1);
    const again = await claimedOffers(t.db, links);
    expect(again).toHaveLength(25);
    expect(again.filter((g) => g.pendingCommands).map((g) => g.run.id)).toEqual(['run_c12']);
  });
});
