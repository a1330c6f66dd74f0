import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { ControlPlaneClient } from '@runt/protocol';
import { startHarness, type Harness } from './harness.js';
import { pairAgent, uniqueRuntime } from './agent-double.js';

const log = (seq: number, data = `line ${seq}\n`) => ({
  seq,
  type: 'log' as const,
  payload: { stream: 'stdout', data },
});

// Status reports that carry the holder's last events, and the terminal report that gives the
// lease up (so the agent sends no separate release): same fencing and seq rules as the
// separate calls, one transaction.
describe.each(TEST_BACKENDS)('status reports with events on %s', (backend) => {
  let h: Harness;
  let admin: ControlPlaneClient;
  beforeAll(async () => {
    h = await startHarness(backend, {}, { schedulerTickMs: 100, sweepIntervalMs: 100 });
    admin = new ControlPlaneClient({ url: h.cp.url, token: h.adminToken, retries: 0 });
  });
  afterAll(async () => h?.close());

  async function claimedRun() {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, `box-${runtime}`, [runtime]);
    await agent.connect();
    const { run } = await admin.submitRun({ runtime, command: ['echo', 'hi'] });
    const offer = await agent.waitFor('offer', (m) => m.run.id === run.id);
    const claim = await agent.client.claimRun(offer.run.id, { runner_id: 'r1', lease_ms: 30_000 });
    return { agent, run, claim, token: claim.fencing_token };
  }

  const seqs = async (runId: string) => (await admin.listEvents(runId)).events.map((e) => [e.seq, e.type]);

  it('says in the claim whether commands are waiting', async () => {
    const { claim } = await claimedRun();
    expect(claim.pending_commands).toBe(false);
    expect(claim.run).toMatchObject({ status: 'accepted', lease: { fencing_token: claim.fencing_token } });
  });

  it('stores events carried by a running report with it, and a retried report adds nothing', async () => {
    const { run, agent, token } = await claimedRun();
    const body = { fencing_token: token, status: 'running' as const, events: [log(1), log(2)] };
    const first = await agent.client.reportStatus(run.id, body);
    expect(first).toMatchObject({
      run: { status: 'running', lease: { fencing_token: token } },
      next_event_seq: 3,
    });
    const again = await agent.client.reportStatus(run.id, body);
    expect(again).toMatchObject({ run: { status: 'running' }, next_event_seq: 3 });
    expect(await seqs(run.id)).toEqual([
      [1, 'log'],
      [2, 'log'],
    ]);
  });

  it('stores events reported out of order in seq order, each with its own payload', async () => {
    const { run, agent, token } = await claimedRun();
    const out = await agent.client.reportStatus(run.id, {
      fencing_token: token,
      status: 'running',
      events: [log(2, 'b\n'), log(1, 'a\n'), log(3, 'c\n')],
    });
    expect(out).toMatchObject({ run: { status: 'running' }, next_event_seq: 4 });
    const events = (await admin.listEvents(run.id)).events;
    expect(events.map((e) => [e.seq, (e.payload as { data: string }).data])).toEqual([
      [1, 'a\n'],
      [2, 'b\n'],
      [3, 'c\n'],
    ]);
  });

  it('stores a terminal report’s events before terminal_status, releases the lease, and answers a retry with 409', async () => {
    const { run, agent, token } = await claimedRun();
    await agent.client.appendEvents(run.id, { fencing_token: token, events: [log(1), log(2)] });
    // 1 and 2 are resends (dropped), 3 is new.
    const done = await agent.client.reportStatus(run.id, {
      fencing_token: token,
      status: 'completed',
      exit_code: 0,
      events: [log(1), log(2), log(3)],
    });
    expect(done).toMatchObject({
      run: { status: 'completed', exit_code: 0, lease: null },
      next_event_seq: 5,
    });
    expect(await seqs(run.id)).toEqual([
      [1, 'log'],
      [2, 'log'],
      [3, 'log'],
      [4, 'terminal_status'],
    ]);
    const lease = await h.cp.leases.get(run.id);
    expect(lease).toMatchObject({ holder: null, fencingToken: token, live: false });
    const retry = await h.api(`/api/runs/${run.id}/status`, {
      token: agent.token,
      body: { fencing_token: token, status: 'completed', exit_code: 0, events: [log(3)] },
    });
    expect(retry.status).toBe(409);
    expect(retry.json).toMatchObject({ error: { code: 'run-not-active' } });
    // The release an older agent still sends after its terminal report stays harmless.
    expect(await agent.client.releaseRun(run.id, { fencing_token: token })).toEqual({ ok: true });
    expect(await seqs(run.id)).toHaveLength(4);
  });

  it('fences a report with events: a stale token, another workstation and a gap write nothing', async () => {
    const { run, agent, token } = await claimedRun();
    const stale = await h.api(`/api/runs/${run.id}/status`, {
      token: agent.token,
      body: { fencing_token: token + 1, status: 'running', events: [log(1)] },
    });
    expect(stale.status).toBe(409);
    expect(stale.json).toMatchObject({ error: { code: 'runner-lease-conflict' } });

    const other = await pairAgent(h, `other-${uniqueRuntime()}`, ['x']);
    const foreign = await h.api(`/api/runs/${run.id}/status`, {
      token: other.token,
      body: { fencing_token: token, status: 'completed', events: [log(1)] },
    });
    expect(foreign.status).toBe(403);

    const gap = await h.api(`/api/runs/${run.id}/status`, {
      token: agent.token,
      body: { fencing_token: token, status: 'completed', exit_code: 0, events: [log(2), log(3)] },
    });
    expect(gap.status).toBe(409);
    expect(gap.json).toMatchObject({ error: { code: 'event-seq-gap', details: { next_event_seq: 1 } } });

    expect(await seqs(run.id)).toEqual([]);
    expect((await admin.getRun(run.id)).run).toMatchObject({
      status: 'accepted',
      lease: { fencing_token: token },
    });
  });

  it('refuses a report once the lease ran out, without writing its events', async () => {
    const { run, agent, token } = await claimedRun();
    await h.cp.db.query(
      `update leases set expires_at = clock_timestamp() - interval '1 second' where resource = $1`,
      [run.id],
    );
    const late = await h.api(`/api/runs/${run.id}/status`, {
      token: agent.token,
      body: { fencing_token: token, status: 'completed', exit_code: 0, events: [log(1)] },
    });
    expect(late.status).toBe(409);
    const ev = await h.cp.db.query<{ n: number }>(
      'select count(*)::int as n from run_events where run_id = $1 and type = $2',
      [run.id, 'log'],
    );
    expect(ev.rows[0]!.n).toBe(0);
  });
});
