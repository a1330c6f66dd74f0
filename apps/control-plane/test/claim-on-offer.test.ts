import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { ControlPlaneClient, type ClaimRunResponse } from '@runt/protocol';
import { openTestLink, startHarness, type Harness, type TestLink } from './harness.js';
import { eventually, pairAgent, uniqueRuntime, type AgentDouble } from './agent-double.js';

/** An agent link that asks for claim on offer for `runner`, and every message it gets. */
async function linkClaiming(
  h: Harness,
  agent: AgentDouble,
  runtime: string,
  runner: string,
): Promise<TestLink & { claimed: () => ClaimRunResponse[] }> {
  const link = await openTestLink(h, agent.token, 'claimer', [runtime], {
    runner_id: runner,
    lease_ms: 30_000,
  });
  const claimed = () => link.got.flatMap((m) => (m.type === 'offer-claimed' ? m.runs : []));
  return { ...link, claimed };
}

// Issue 9, claim on offer: the scheduler's placement takes the lease for the agent's runner in
// the same statement, so a linked agent that asked for it needs no claim round trip.
describe.each(TEST_BACKENDS)('claim on offer on %s', (backend) => {
  let h: Harness;
  let admin: ControlPlaneClient;
  beforeAll(async () => {
    h = await startHarness(backend, {}, { schedulerTickMs: 100, sweepIntervalMs: 100, linkPingMs: 5_000 });
    admin = new ControlPlaneClient({ url: h.cp.url, token: h.adminToken, retries: 0 });
  });
  afterAll(async () => h?.close());

  async function metric(series: string): Promise<number> {
    const text = await (await fetch(`${h.cp.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line ? Number(line.slice(series.length + 1)) : 0;
  }

  it('sends runs already leased to the runner; the agent reports on them with no claim', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'claim-on-offer', [runtime]);
    const link = await linkClaiming(h, agent, runtime, 'r1');
    const ids = (await Promise.all([1, 2, 3].map(() => admin.submitRun({ runtime, command: ['x'] })))).map(
      (r) => r.run.id,
    );
    await eventually(
      () => ids.every((id) => link.claimed().some((c) => c.run.id === id)),
      'all three leased',
    );
    expect(link.got.some((m) => m.type === 'offer')).toBe(false); // no plain offer
    for (const c of link.claimed()) {
      expect(c.run).toMatchObject({ status: 'accepted', workstation_id: agent.workstationId });
      expect(c.run.lease).toMatchObject({
        holder: `${agent.workstationId}/r1`,
        fencing_token: c.fencing_token,
      });
      expect(c.next_event_seq).toBe(1);
      // fenced by the token that came with the offer: no claim request was needed
      const { run } = await agent.client.reportStatus(c.run.id, {
        fencing_token: c.fencing_token,
        status: 'running',
      });
      expect(run.status).toBe('running');
      await agent.client.reportStatus(c.run.id, {
        fencing_token: c.fencing_token,
        status: 'completed',
        exit_code: 0,
      });
    }
    link.ws.close();
  });

  it('hands a run back fenced by its token: back to the queue with no attempt used, then leased again', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'hand-back', [runtime]);
    const link = await linkClaiming(h, agent, runtime, 'r1');
    const handedBack = await metric('runt_cp_run_requeues_total{reason="handed-back"}');
    const { run } = await admin.submitRun({ runtime, command: ['x'] });
    const first = await eventually(() => link.claimed().find((c) => c.run.id === run.id), 'leased');
    // a wrong token changes nothing
    link.ws.send(
      JSON.stringify({ type: 'result', id: run.id, ok: false, fencing_token: first.fencing_token + 1 }),
    );
    link.ws.send(
      JSON.stringify({ type: 'result', id: run.id, ok: false, fencing_token: first.fencing_token }),
    );
    const again = await eventually(
      () => link.claimed().find((c) => c.run.id === run.id && c.fencing_token > first.fencing_token),
      'leased again after the hand-back',
    );
    expect(again.run.attempt).toBe(1);
    expect(await metric('runt_cp_run_requeues_total{reason="handed-back"}')).toBe(handedBack + 1);
    link.ws.close();
  });

  it('re-sends unstarted runs claimed for a runner when its link registers again, and to no other runner', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'relink', [runtime]);
    const first = await linkClaiming(h, agent, runtime, 'r1');
    const { run } = await admin.submitRun({ runtime, command: ['x'] });
    const leased = await eventually(() => first.claimed().find((c) => c.run.id === run.id), 'leased');
    first.ws.terminate(); // as if the offer had been lost with the link
    await eventually(async () => (await admin.getRun(run.id)).run.status === 'accepted', 'still leased');
    const other = await linkClaiming(h, agent, runtime, 'r2'); // another runner: not its run
    await new Promise((r) => setTimeout(r, 300));
    expect(other.claimed().some((c) => c.run.id === run.id)).toBe(false);
    other.ws.close();
    await eventually(
      async () =>
        (await admin.listWorkstations()).workstations.some(
          (w) => w.id === agent.workstationId && w.status === 'offline',
        ),
      'offline',
    );
    const back = await linkClaiming(h, agent, runtime, 'r1');
    const resent = await eventually(() => back.claimed().find((c) => c.run.id === run.id), 're-sent');
    expect(resent.fencing_token).toBe(leased.fencing_token);
    back.ws.close();
  });
});
