import { sqlLiteral, type Queryable } from '@runt/sql';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pageSql } from '../src/runs/scheduler.js';
import { claimMany, claimOnOffer, finishMany, lockExpiredRuns, renewMany } from '../src/runs/transitions.js';
import { addWorkstation, migratedDatabase } from './scheduler-fixtures.js';

/**
 * A prepared statement's generic plan is made once per connection, from the statistics of that
 * moment, and kept until an ANALYZE of its tables — which a server without autovacuum (the
 * bench's, CI's) never runs. A plan made while the tables were young (a new database: a few
 * runs, no statistics) must still find the rows of a batch by key when `leases` holds every
 * lease ever taken: a lease row is kept for ever (its token never goes back). The finish's and
 * the renewal's lease lock steps found theirs as one array (`l.resource = any (array(…))`),
 * planned as a Seq Scan of `leases` on a young table — 18,150 rows filtered for a finish of 25
 * after 18,000 runs of the bench (issue 9, docs/benchmarks.md); the finish's run lock step, found
 * the same way, as a Seq Scan of `runs`.
 */
describe.each(TEST_BACKENDS)('plans made on a young database (%s)', (backend) => {
  let t: TestDatabase;

  beforeAll(async () => {
    t = await migratedDatabase(backend);
    await t.db.query(
      `insert into workstations (id, display_name, listening, last_seen_at, runtimes, cpu_count, link_state)
       values ('ws_1', 'ws_1', true, now(), '["sh"]', 8, 'connected')`,
    );
    await t.db.query(
      `insert into runs (id, status, runtime, workstation_id, offered_at, accepted_at, started_at, lease_holder, fencing_token)
       select 'run_' || g, 'running', 'sh', 'ws_1', now(), now(), now(), 'ws_1/r', 1 from generate_series(1, 5) g`,
    );
    await t.db.query(
      `insert into leases (resource, holder, fencing_token, expires_at, acquired_at)
       select 'run_' || g, 'ws_1/r', 1, now() + interval '1 hour', now() from generate_series(1, 5) g`,
    );
    // the leases of the runs that came before (released, kept for their tokens), as the bench's
    // tables held when the finish's plan was made
    await t.db.query(
      `insert into runs (id, status, runtime, workstation_id, finished_at)
       select 'old_' || g, 'completed', 'sh', 'ws_1', now() from generate_series(1, 1000) g`,
    );
    await t.db.query(
      `insert into leases (resource, holder, fencing_token, expires_at, acquired_at)
       select 'old_' || g, null, 1, now(), now() from generate_series(1, 1000) g`,
    );
    // no ANALYZE: the statistics of a young database are none
  });
  afterAll(async () => {
    await t?.dispose();
  });

  const item = (id: string) => ({ runId: id, workstationId: 'ws_1', token: 1 });
  const writes: Array<[string, (q: Queryable) => Promise<unknown>]> = [
    [
      'finish',
      (q) =>
        finishMany(q, [
          { ...item('run_1'), brief: true, outcome: { status: 'completed', exitCode: 0 } },
          { ...item('run_2'), brief: true, outcome: { status: 'completed', exitCode: 0 } },
        ]),
    ],
    [
      'finish (full answer)',
      (q) => finishMany(q, [{ ...item('run_3'), outcome: { status: 'failed', exitCode: 1 } }]),
    ],
    [
      'renew',
      (q) =>
        renewMany(q, [
          { ...item('run_4'), leaseMs: 30_000 },
          { ...item('run_5'), leaseMs: 30_000 },
        ]),
    ],
  ];

  // A claim sent by an agent (HTTP or its link: a run offered without claim on offer, as every
  // offer across replicas is) locks its runs first: found as one array, a Seq Scan of `runs` in
  // such a plan — 147 buffer hits and ~0.85 ms for a claim of one run after 4,000 samples of the
  // replicas bench, the largest statement of its cross-replica sample (issue 10, docs/benchmarks.md).
  it('the claim finds its runs and leases by key in the plan it keeps', async () => {
    const sent: Array<{ text: string; params?: unknown[] }> = [];
    await claimMany(
      { query: async (text, params) => (sent.push({ text, params }), { rows: [], rowCount: 0 }) },
      ['run_1', 'run_2'],
      'ws_1',
      'ws_1/r',
      30_000,
    );
    expect(sent).toHaveLength(1);
    const plan = await genericPlan(t, sent[0]!.text, sent[0]!.params ?? []);
    expect(plan, plan).not.toMatch(/Seq Scan on (runs|leases)/);
    expect(plan, plan).toMatch(/runs_pkey/);
    expect(plan, plan).toMatch(/leases_pkey/);
  });

  it.each(writes)('%s finds its leases by key in the plan it keeps', async (name, write) => {
    const sent: Array<{ text: string; params?: unknown[] }> = [];
    await write({ query: async (text, params) => (sent.push({ text, params }), { rows: [], rowCount: 0 }) });
    expect(sent).toHaveLength(1);
    const plan = await genericPlan(t, sent[0]!.text, sent[0]!.params ?? []);
    expect(plan, name).toMatch(/leases_pkey/);
    expect(plan, `${name}\n${plan}`).not.toMatch(/Seq Scan on leases/);
    // and its runs by key too: the finish's run lock step, found as one array, was a Seq Scan
    // of `runs` in such a plan (1,147–1,612 buffer hits for a finish of 25 after ~22,000 runs)
    expect(plan, `${name}\n${plan}`).not.toMatch(/Seq Scan on runs/);
    if (name !== 'renew') expect(plan, name).toMatch(/runs_pkey/);
  });

  // The claim on offer answers whether each run has commands waiting (`pending_commands`), in
  // every pass that claims. On a young database `run_commands` is empty, and the probe's custom
  // plan there is a Seq Scan (nothing to read); the plan a connection keeps must find a run's
  // commands by key all the same, or every claim reads every command ever sent once they pile up.
  it('the claim on offer finds pending commands by key in the plan it keeps', async () => {
    for (const tid of [undefined, '(0,1)']) {
      const sent: Array<{ text: string; params?: unknown[] }> = [];
      await claimOnOffer(
        { query: async (text, params) => (sent.push({ text, params }), { rows: [], rowCount: 0 }) },
        [{ id: 'run_1', ws: 'ws_1', holder: 'ws_1/r', leaseMs: 30_000, ...(tid ? { tid } : {}) }],
      );
      expect(sent).toHaveLength(1);
      const plan = await genericPlan(t, sent[0]!.text, sent[0]!.params ?? []);
      expect(plan, plan).toMatch(/run_commands_run_id_seq_key/);
      expect(plan, plan).not.toMatch(/Seq Scan on run_commands/);
    }
  });

  // The sweeper's pick of the runs whose lease ran out: no lease has, so it reads one index entry
  // (the earliest held lease's expiry), not every lease and run ever made.
  it('the sweeper reads no lease or run while none has run out, in the plan it keeps', async () => {
    const sent: Array<{ text: string; params?: unknown[] }> = [];
    await lockExpiredRuns(
      { query: async (text, params) => (sent.push({ text, params }), { rows: [], rowCount: 0 }) },
      100,
    );
    const plan = await genericPlan(t, sent[0]!.text, sent[0]!.params ?? [], true);
    expect(plan).toMatch(/leases_held_expires_at_idx/);
    const scans = plan.split('\n').filter((l) => /Scan .*on (leases|runs) (l|r)\b/.test(l));
    expect(scans.length, plan).toBeGreaterThan(0);
    for (const scan of scans) expect(scan, plan).toMatch(/never executed/);
  });
});

/**
 * The scheduling page is prepared on each connection of the pool, and a connection that makes
 * its generic plan once `runs` has grown (here: 21,000 runs claimed and finished since the
 * database was made, never analyzed; the bench's burst-batch after its drain) must still read
 * the queue in position order. Its runtime filter was an index key of `runs_runtime_status_idx`
 * (runtime, status, position), and such a plan read every queued run of the runtime, then
 * sorted them, to lock the first 25 (issue 9, docs/benchmarks.md).
 */
describe.each(TEST_BACKENDS)('the page planned after runs grew (%s)', (backend) => {
  let t: TestDatabase;

  beforeAll(async () => {
    t = await migratedDatabase(backend);
    await addWorkstation(t.db, 'ws_a', 'fake', 25);
    await addWorkstation(t.db, 'ws_b', 'fake', 25);
    const queue = (n: number, from: number) =>
      t.db.query(
        `insert into runs (id, status, runtime, command, env, max_attempts)
           select 'run_' || i, 'queued', 'fake', '["x"]'::jsonb, '{}'::jsonb, 1 from generate_series($1::int, $2::int) i`,
        [from, from + n - 1],
      );
    // runs that came and went: each claimed, then finished (a row version and index entries each)
    await queue(21_000, 1);
    await t.db.query(`update runs set status = 'accepted', workstation_id = 'ws_a' where status = 'queued'`);
    await t.db.query(`update runs set status = 'completed', finished_at = now() where status = 'accepted'`);
    await queue(1_000, 21_001);
    // no ANALYZE
  });
  afterAll(async () => {
    await t?.dispose();
  });

  it('reads the queue index in order in the plan a connection keeps', async () => {
    const postgres = backend === 'postgres';
    const plan = await t.db.transaction(async (tx) => {
      // as a pass plans it: no bitmap scans on Postgres (PASS_PLAN_SQL), the lock noted taken
      await tx.query(
        `select set_config('plan_cache_mode', 'force_generic_plan', true), set_config('runt.pass_locked', 'on', true)` +
          (postgres ? `, set_config('enable_bitmapscan', 'off', true)` : ''),
      );
      await tx.query(`prepare page_probe(bigint, int) as ${pageSql(true, postgres, false)}`);
      try {
        const r = await tx.query<{ 'QUERY PLAN': string }>(
          `explain (analyze, timing off) execute page_probe(0, 25)`,
        );
        return r.rows.map((x) => x['QUERY PLAN']).join('\n');
      } finally {
        await tx.query('deallocate page_probe');
      }
    });
    const q = plan.slice(plan.indexOf('CTE q'), plan.indexOf('CTE c'));
    expect(q, plan).toMatch(/Index Scan using runs_queued_idx on runs/);
    expect(q, plan).not.toMatch(/runs_runtime_status_idx/);
    // the 50 free slots' worth of the queue's head, not its 1,000 runs
    const read = [...q.matchAll(/Index Scan using \w+ on runs r\w* .*actual rows=(\d+)/g)].map((m) =>
      Number(m[1]),
    );
    expect(read.length, plan).toBeGreaterThan(0);
    for (const n of read) expect(n, plan).toBeLessThanOrEqual(50);
  });
});

/** The plan a connection keeps for `text` once it settles on a generic one (EXPLAIN; run when `analyze`: only reads). */
async function genericPlan(
  t: TestDatabase,
  text: string,
  params: unknown[],
  analyze = false,
): Promise<string> {
  return t.db.transaction(async (tx) => {
    await tx.query(`set local plan_cache_mode = force_generic_plan`);
    await tx.query(`prepare young_plan_probe as ${text}`);
    try {
      const args = params.length ? `(${params.map((v) => sqlLiteral(String(v))).join(', ')})` : '';
      const r = await tx.query<{ 'QUERY PLAN': string }>(
        `explain ${analyze ? '(analyze, timing off) ' : ''}execute young_plan_probe${args}`,
      );
      return r.rows.map((x) => x['QUERY PLAN']).join('\n');
    } finally {
      await tx.query('deallocate young_plan_probe');
    }
  });
}
