import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { ControlPlaneClient } from '@runt/protocol';
import { startHarness, type Harness } from './harness.js';
import { eventually, pairAgent, uniqueRuntime } from './agent-double.js';

// The control plane's side of run timeouts: a run never placed within queue_timeout_s ends
// blocked (unplaceable); a run its agent did not stop past timeout_s (+ grace) is failed with
// timeout by the sweeper and its lease given up; RUNT_RUN_TIMEOUT_S / RUNT_QUEUE_TIMEOUT_S fill
// in what a submit leaves out.
describe.each(TEST_BACKENDS)('run timeouts on %s', (backend) => {
  let h: Harness;
  let admin: ControlPlaneClient;
  beforeAll(async () => {
    h = await startHarness(
      backend,
      {},
      { schedulerTickMs: 100, sweepIntervalMs: 100, runTimeoutGraceS: 0, runTimeoutS: 3600 },
    );
    admin = new ControlPlaneClient({ url: h.cp.url, token: h.adminToken, retries: 0 });
  });
  afterAll(async () => h?.close());

  const runOf = async (id: string) => (await admin.getRun(id)).run;

  it('ends a run never placed within its queue timeout as blocked (unplaceable)', async () => {
    const { run } = await admin.submitRun({ runtime: uniqueRuntime(), command: ['x'], queue_timeout_s: 1 });
    expect(run).toMatchObject({ status: 'queued', queue_timeout_s: 1 });
    const ended = await eventually(async () => {
      const r = await runOf(run.id);
      return r.status === 'queued' ? undefined : r;
    }, 'the queue timeout');
    expect(ended).toMatchObject({
      status: 'blocked',
      failure_kind: 'unplaceable',
      failure_message: 'not placed within its queue timeout of 1s',
    });
    const events = (await admin.listEvents(run.id)).events;
    expect(events.at(-1)).toMatchObject({
      type: 'terminal_status',
      payload: { status: 'blocked', failure_kind: 'unplaceable' },
    });
  });

  it('fails a running run past its timeout that its agent did not stop, and fences the agent out', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, `timeout-${runtime}`, [runtime]);
    await agent.connect();
    const { run } = await admin.submitRun({ runtime, command: ['x'], timeout_s: 1 });
    await agent.waitFor('offer', (m) => m.run.id === run.id);
    const claim = await agent.client.claimRun(run.id, { runner_id: 'r', lease_ms: 60_000 });
    await agent.client.reportStatus(run.id, { fencing_token: claim.fencing_token, status: 'running' });
    const ended = await eventually(async () => {
      const r = await runOf(run.id);
      return r.status === 'running' ? undefined : r;
    }, 'the timeout backstop');
    expect(ended).toMatchObject({ status: 'failed', failure_kind: 'timeout', lease: null });
    expect(ended.failure_message).toMatch(/^exceeded its timeout of 1s/);
    await agent.waitFor('cancel', (m) => m.run_id === run.id);
    const hb = await h.api(`/api/runs/${run.id}/heartbeat`, {
      token: agent.token,
      body: { fencing_token: claim.fencing_token, lease_ms: 5000 },
    });
    expect(hb.status).toBeGreaterThanOrEqual(400);
  });

  it("takes the configured default when a submit names no timeout, and the submit's own otherwise", async () => {
    const { run: byDefault } = await admin.submitRun({ runtime: uniqueRuntime(), command: ['x'] });
    expect(byDefault).toMatchObject({ timeout_s: 3600, queue_timeout_s: null });
    const { run: own } = await admin.submitRun({ runtime: uniqueRuntime(), command: ['x'], timeout_s: 90 });
    expect(own.timeout_s).toBe(90);
    await admin.cancelRun(byDefault.id);
    await admin.cancelRun(own.id);
  });

  it('refuses a timeout of 0 or a fraction (400)', async () => {
    for (const body of [{ timeout_s: 0 }, { queue_timeout_s: 1.5 }]) {
      const r = await h.api('/api/runs', {
        token: h.adminToken,
        body: { runtime: 'fake', command: ['x'], ...body },
      });
      expect(r.status).toBe(400);
    }
  });
});
