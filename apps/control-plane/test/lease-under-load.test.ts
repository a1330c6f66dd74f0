import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { ControlPlaneClient } from '@runt/protocol';
import { startHarness, type Harness } from './harness.js';
import { pairAgent, uniqueRuntime } from './agent-double.js';

// Issue 8, defect 10: on PGlite at load ≈ 8 runs ended `runner-lost` while their workloads were
// fine: the renewals of their 30 s leases queued behind the work those leases protect. Here the
// database gets a backlog of work that takes about three leases to drain, while the holder
// renews its lease over HTTP every third of a lease, as the agent's renew loop does. Every
// renewal must be answered with the lease still held, and the run must still be running when
// the backlog is gone.
const LEASE_MS = 3000;

describe.each(TEST_BACKENDS)('lease renewals under a database backlog on %s', (backend) => {
  let h: Harness;
  let admin: ControlPlaneClient;
  beforeAll(async () => {
    h = await startHarness(backend, {}, { schedulerTickMs: 100, sweepIntervalMs: 200 });
    admin = new ControlPlaneClient({ url: h.cp.url, token: h.adminToken, retries: 0 });
  });
  afterAll(async () => h?.close());

  it('renewals do not queue behind the work: the lease never expires (issue 8, defect 10)', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, `load-${runtime}`, [runtime]);
    await agent.connect();
    const { run } = await admin.submitRun({ runtime, command: ['x'] });
    await agent.waitFor('offer', (m) => m.run.id === run.id);
    const claim = await agent.client.claimRun(run.id, { runner_id: 'r', lease_ms: LEASE_MS });
    await agent.client.reportStatus(run.id, { fencing_token: claim.fencing_token, status: 'running' });

    // The backlog: ~9 s of work queued at once. PGlite runs it one statement at a time; Postgres
    // 10 at a time (its pool), so its statements sleep 10 times longer.
    const n = 90;
    const seconds = backend === 'pglite' ? 0.1 : 1;
    let drained = false;
    const backlog = Promise.all(
      Array.from({ length: n }, () =>
        h.t.db.transaction(async (tx) => {
          await tx.query('select pg_sleep($1)', [seconds]);
        }),
      ),
    ).finally(() => (drained = true));
    // A renewal after a while also has to authenticate again (the credential cache expired).
    h.cp.principals.forget();

    const answers: Array<{ status: number; ms: number; code?: string }> = [];
    while (!drained) {
      const t0 = performance.now();
      const r = await h.api(`/api/runs/${run.id}/heartbeat`, {
        token: agent.token,
        body: { fencing_token: claim.fencing_token, lease_ms: LEASE_MS },
      });
      answers.push({ status: r.status, ms: Math.round(performance.now() - t0), code: r.json?.error?.code });
      await new Promise((res) => setTimeout(res, LEASE_MS / 3));
    }
    await backlog;
    // The sweeper had its turns after the backlog too.
    await h.cp.sweeper.sweep();

    expect(
      answers.filter((a) => a.status !== 200),
      JSON.stringify(answers),
    ).toEqual([]);
    expect(answers.length, JSON.stringify(answers)).toBeGreaterThanOrEqual(3);
    const after = (await admin.getRun(run.id)).run;
    expect(after).toMatchObject({ status: 'running', attempt: 1 });
    expect(after.lease?.fencing_token).toBe(claim.fencing_token);
    await agent.client.reportStatus(run.id, {
      fencing_token: claim.fencing_token,
      status: 'completed',
      exit_code: 0,
    });
  });
});
