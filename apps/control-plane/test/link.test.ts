import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { TEST_BACKENDS } from '@runt/sql/testing';
import {
  ControlPlaneClient,
  LINK_CLOSE_CODES,
  LINK_OPS,
  LINK_REQUESTS_FORM,
  STATUS_STARTED_FORM,
} from '@runt/protocol';
import { startHarness, type Harness } from './harness.js';
import { eventually, pairAgent, uniqueRuntime } from './agent-double.js';

/** Opens a link and reports how the server answered the upgrade. */
function dial(
  h: Harness,
  headers: Record<string, string>,
  path = '/api/agent/link',
): Promise<{ status: number } | { open: WebSocket }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${h.cp.url.replace(/^http/, 'ws')}${path}`, { headers });
    ws.once('open', () => resolve({ open: ws }));
    ws.once('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0 });
      res.resume();
    });
    ws.once('error', (e) => {
      if (!String(e.message).includes('Unexpected server response')) reject(e);
    });
  });
}

describe.each(TEST_BACKENDS)('agent link on %s', (backend) => {
  let h: Harness;
  let admin: ControlPlaneClient;
  beforeAll(async () => {
    h = await startHarness(backend, {}, { schedulerTickMs: 100, sweepIntervalMs: 100, linkPingMs: 300 });
    admin = new ControlPlaneClient({ url: h.cp.url, token: h.adminToken, retries: 0 });
  });
  afterAll(async () => h?.close());

  const statusOf = async (id: string) =>
    (await admin.listWorkstations()).workstations.find((w) => w.id === id);

  it('refuses the upgrade without a valid workstation token (401/403, before upgrading)', async () => {
    const agent = await pairAgent(h, 'auth-link', ['x']);
    expect(await dial(h, {})).toEqual({ status: 401 });
    expect(await dial(h, { authorization: 'Bearer rnt_ws_' + 'A'.repeat(43) })).toEqual({ status: 401 });
    expect(await dial(h, { authorization: 'Basic abc' })).toEqual({ status: 401 });
    expect(await dial(h, { authorization: `Bearer ${h.adminToken}` })).toEqual({ status: 403 });
    expect(await dial(h, { authorization: `Bearer ${agent.token}` }, '/api/elsewhere')).toEqual({
      status: 404,
    });
    const ok = await dial(h, { authorization: `Bearer ${agent.token}` });
    expect('open' in ok).toBe(true);
    if ('open' in ok) ok.open.close();
  });

  it('registers over the link: online, listening, registration updated in place; the credential names the workstation', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'reg-link', [runtime]);
    const before = await statusOf(agent.workstationId);
    expect(before?.status).toBe('offline');
    const ws = new WebSocket(`${h.cp.url.replace(/^http/, 'ws')}/api/agent/link`, {
      headers: { authorization: `Bearer ${agent.token}` },
    });
    const got: string[] = [];
    ws.on('message', (d) => got.push((d as Buffer).toString('utf8')));
    await new Promise((r) => ws.once('open', r));
    ws.send(
      JSON.stringify({
        type: 'register',
        workstation_id: 'ws_somebody_else',
        workstation: {
          display_name: 'renamed',
          cpu_count: 3,
          runtimes: [runtime],
          labels: { zone: 'z' },
          agent_version: '9.9.9',
          listening: true,
        },
        running_run_ids: [],
      }),
    );
    await eventually(() => got.some((m) => JSON.parse(m).type === 'registered'), 'registered');
    // `ops`: the link operations this control plane serves (584f87e), every one of the protocol's,
    // and the forms of them it takes (902a459: a run's start reported with its end).
    expect(JSON.parse(got.find((m) => JSON.parse(m).type === 'registered')!)).toEqual({
      type: 'registered',
      workstation_id: agent.workstationId,
      ops: [...Object.keys(LINK_OPS), STATUS_STARTED_FORM, LINK_REQUESTS_FORM],
    });
    expect(await statusOf(agent.workstationId)).toMatchObject({
      status: 'online',
      listening: true,
      display_name: 'renamed',
      cpu_count: 3,
      labels: { zone: 'z' },
      agent_version: '9.9.9',
    });
    ws.close();
  });

  it('pushes an offer to an idle agent as soon as a run is submitted', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'push-link', [runtime]);
    await agent.connect();
    const { run } = await admin.submitRun({ runtime, command: ['x'] });
    const offer = await agent.waitFor('offer', (m) => m.run.id === run.id);
    expect(offer).toMatchObject({
      id: run.id,
      run: { id: run.id, status: 'offered', workstation_id: agent.workstationId, runtime },
    });
  });

  it('takes a declined offer back into the queue, counted in /metrics', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'decline-link', [runtime]);
    await agent.connect();
    const offers = await metric('runt_cp_run_offers_total');
    const declined = await metric('runt_cp_run_requeues_total{reason="declined"}');
    const { run } = await admin.submitRun({ runtime, command: ['x'] });
    await agent.waitFor('offer', (m) => m.run.id === run.id);
    await h.cp.scheduler.stop(); // hold placement still so the re-queue is visible
    try {
      agent.link!.send(JSON.stringify({ type: 'result', id: run.id, ok: false, error: 'runtime busy' }));
      await eventually(
        async () => (await admin.getRun(run.id)).run.status === 'queued',
        'the run back in the queue',
      );
      expect(await metric('runt_cp_run_requeues_total{reason="declined"}')).toBe(declined + 1);
    } finally {
      h.cp.scheduler.start();
    }
    await eventually(
      async () => (await admin.getRun(run.id)).run.status === 'offered',
      'the run offered again',
    );
    // Counters are per process: other tests of this file may offer meanwhile, never fewer than these two.
    expect(await metric('runt_cp_run_offers_total')).toBeGreaterThanOrEqual(offers + 2);
  });

  /** One sample of the control plane's /metrics (0 when the series has no value yet). */
  async function metric(series: string): Promise<number> {
    const text = await (await fetch(`${h.cp.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line ? Number(line.slice(series.length + 1)) : 0;
  }

  it('marks the workstation offline the moment its link drops, and online again on register', async () => {
    const agent = await pairAgent(h, 'drop-link', [uniqueRuntime()]);
    await agent.connect();
    expect((await statusOf(agent.workstationId))?.status).toBe('online');
    agent.link!.terminate();
    await eventually(
      async () => (await statusOf(agent.workstationId))?.status === 'offline',
      'offline after the drop',
    );
    expect((await statusOf(agent.workstationId))?.listening).toBe(false);
    await agent.connect();
    expect((await statusOf(agent.workstationId))?.status).toBe('online');
  });

  it('replaces the first link when the same workstation opens a second', async () => {
    const agent = await pairAgent(h, 'twice-link', [uniqueRuntime()]);
    await agent.connect();
    const first = agent.link!;
    const firstClosed = new Promise<number>((r) => first.once('close', (code) => r(code)));
    await agent.connect();
    expect(await firstClosed).toBe(LINK_CLOSE_CODES.replaced);
    expect((await statusOf(agent.workstationId))?.status).toBe('online');
    expect(h.cp.links.get(agent.workstationId)).toBeDefined();
  });

  it('closes the link of a revoked credential', async () => {
    const agent = await pairAgent(h, 'revoked-link', [uniqueRuntime()]);
    await agent.connect();
    await admin.revokeCredential(agent.credentialId);
    expect((await agent.waitClosed()).code).toBe(LINK_CLOSE_CODES.revoked);
    expect(await dial(h, { authorization: `Bearer ${agent.token}` })).toEqual({ status: 401 });
  });

  it('closes the link on an invalid message', async () => {
    const agent = await pairAgent(h, 'invalid-link', [uniqueRuntime()]);
    for (const bad of [
      'not json',
      JSON.stringify({ type: 'teleport' }),
      JSON.stringify({ type: 'register', workstation: {} }),
    ]) {
      await agent.connect();
      agent.link!.send(bad);
      expect((await agent.waitClosed()).code).toBe(LINK_CLOSE_CODES.invalid);
    }
  });

  it('re-sends a pending cancel when the agent registers again', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'cancel-link', [runtime]);
    await agent.connect();
    const { run } = await admin.submitRun({ runtime, command: ['x'] });
    await agent.waitFor('offer', (m) => m.run.id === run.id);
    await agent.client.claimRun(run.id, { runner_id: 'r', lease_ms: 60_000 });
    agent.link!.close();
    await agent.waitClosed();
    await admin.cancelRun(run.id);
    agent.messages.length = 0;
    await agent.connect({}, [run.id]);
    await agent.waitFor('cancel', (m) => m.run_id === run.id);
  });

  it('pings idle links and drops a peer that stopped answering', async () => {
    const agent = await pairAgent(h, 'dead-peer', [uniqueRuntime()]);
    await agent.connect();
    await agent.waitFor('ping');
    // A peer that stops reading never answers pings: the control plane terminates its link.
    (agent.link as unknown as { _socket: { pause(): void } })._socket.pause();
    await eventually(
      async () => (await statusOf(agent.workstationId))?.status === 'offline',
      'the silent link to be dropped',
    );
    expect(h.cp.links.get(agent.workstationId)).toBeUndefined();
  });

  it('closes every link with 1001 when the control plane stops', async () => {
    const agent = await pairAgent(h, 'shutdown-link', [uniqueRuntime()]);
    await agent.connect();
    await h.cp.close();
    expect((await agent.waitClosed()).code).toBe(LINK_CLOSE_CODES.shutdown);
  });
});
