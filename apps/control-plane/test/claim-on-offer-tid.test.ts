import type { Database, Queryable } from '@runt/sql';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimOnOffer } from '../src/runs/transitions.js';
import { addWorkstation, migratedDatabase, newScheduler } from './scheduler-fixtures.js';

const isClaimOnOffer = (text: string) => text.includes('as p(id text, ws text, holder text, ttl float8');

/**
 * `db` whose passes' claims on offer are explained first (`explain analyze` inside a savepoint
 * rolled back, custom and generic plans, in the pass's own transaction after its page), then
 * run. No `commitWith`: the claim goes as a statement of its own.
 */
function explainingClaims(db: Database, onPlan: (plan: string) => void): Database {
  const explain = async (tx: Queryable, text: string, params: unknown[] | undefined, generic: boolean) => {
    await tx.query('savepoint claim_probe');
    try {
      if (generic) await tx.query(`set local plan_cache_mode = force_generic_plan`);
      const r = await tx.query<{ 'QUERY PLAN': string }>(
        `explain (analyze, timing off, costs off) ${text}`,
        params,
      );
      onPlan(r.rows.map((x) => x['QUERY PLAN']).join('\n'));
    } finally {
      await tx.query('rollback to savepoint claim_probe');
    }
  };
  return {
    ...db,
    transaction: <T>(fn: (tx: Queryable) => Promise<T>) =>
      db.transaction((tx) =>
        fn({
          query: async <R>(text: string, params?: unknown[]) => {
            if (isClaimOnOffer(text))
              for (const generic of [false, true]) await explain(tx, text, params, generic);
            return tx.query<R>(text, params);
          },
          ...(tx.pipeline && { pipeline: tx.pipeline.bind(tx) }),
        }),
      ),
  };
}

// Issue 9: a claim on offer reached each run it claims by two more descents of `runs_pkey` (its
// guard's probe and its UPDATE's), though the pass's page had just locked the row in the same
// transaction. The page now hands over each row's ctid, and the claim reads the runs by it: a Tid
// Scan, the row's heap page alone (~4 buffer hits fewer per claimed run of ~24, docs/benchmarks.md).
describe.each(TEST_BACKENDS)('a claim on offer after its page, on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase(backend);
    await addWorkstation(t.db, 'ws_a', 'fake', 25);
    await t.db.query(
      `insert into runs (id, status, runtime, command, env, max_attempts)
         select 'run_' || lpad(i::text, 5, '0'), 'queued', 'fake', '["x"]'::jsonb, '{}'::jsonb, 1
           from generate_series(1, 2000) i`,
    );
  });
  afterAll(async () => t?.dispose());

  it('reaches the runs the page locked by their ctid, not by the primary key', async () => {
    const plans: string[] = [];
    const scheduler = newScheduler(
      explainingClaims(t.db, (p) => plans.push(p)),
      undefined,
      { claimers: () => ({ holder: 'ws_a/r1', leaseMs: 30_000 }) },
    );
    await scheduler.pass();
    const claimed = await t.db.query<{ n: number }>(
      `select count(*)::int as n from runs r join leases l on l.resource = r.id
        where r.status = 'accepted' and r.workstation_id = 'ws_a' and l.holder = 'ws_a/r1' and l.fencing_token = r.fencing_token`,
    );
    expect(claimed.rows[0]!.n).toBe(25);
    expect(plans).toHaveLength(2); // custom, generic
    for (const plan of plans) {
      const runsScans = plan.split('\n').filter((l) => /Scan.* on runs\b/.test(l));
      expect(runsScans, plan).toHaveLength(2); // the guard's and the UPDATE's
      for (const scan of runsScans) expect(scan, plan).toMatch(/Tid Scan on runs/);
      expect(plan, plan).not.toMatch(/runs_pkey/);
    }
  });

  it('claims nothing by a ctid that no longer names the run', async () => {
    const grants = await t.db.transaction(async (tx) => {
      const [row] = (
        await tx.query<{ tid: string }>(
          `select ctid::text as tid from runs where id = 'run_01000' for update`,
        )
      ).rows;
      // a new version of the row (another ctid), by this transaction
      await tx.query(`update runs set not_before = null where id = 'run_01000'`);
      return claimOnOffer(tx, [
        { id: 'run_01000', ws: 'ws_a', holder: 'ws_a/r1', leaseMs: 30_000, tid: row!.tid },
      ]);
    });
    expect(grants).toEqual([]);
    const s = await t.db.query<{ status: string }>(`select status from runs where id = 'run_01000'`);
    expect(s.rows[0]!.status).toBe('queued');
    const lease = await t.db.query(`select 1 from leases where resource = 'run_01000'`);
    expect(lease.rowCount).toBe(0);
  });
});
