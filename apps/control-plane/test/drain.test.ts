import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { ControlPlaneClient } from '@runt/protocol';
import { startHarness, type Harness } from './harness.js';
import { eventually, pairAgent, uniqueRuntime } from './agent-double.js';

describe.each(TEST_BACKENDS)('drain on %s', (backend) => {
  let h: Harness;
  let admin: ControlPlaneClient;
  beforeAll(async () => {
    h = await startHarness(backend, {}, { schedulerTickMs: 100, sweepIntervalMs: 100, linkPingMs: 300 });
    admin = new ControlPlaneClient({ url: h.cp.url, token: h.adminToken, retries: 0 });
  });
  afterAll(async () => h?.close());

  const workstation = async (id: string) =>
    (await admin.listWorkstations()).workstations.find((w) => w.id === id);
  const runOf = async (id: string) => (await admin.getRun(id)).run;

  it('is admin only and answers 404 for an unknown workstation', async () => {
    const agent = await pairAgent(h, 'drain-auth', [uniqueRuntime()]);
    expect((await h.api(`/api/workstations/${agent.workstationId}/drain`, { method: 'POST' })).status).toBe(
      401,
    );
    expect(
      (await h.api(`/api/workstations/${agent.workstationId}/drain`, { method: 'POST', token: agent.token }))
        .status,
    ).toBe(403);
    const unknown = await h.api('/api/workstations/ws_nope/drain', { method: 'POST', token: h.adminToken });
    expect(unknown.status).toBe(404);
    expect(unknown.json.error.code).toBe('not-found');
    expect((await workstation(agent.workstationId))?.status).not.toBe('draining');
  });

  it('marks the workstation draining, sends drain over its link, withdraws its unclaimed offers and offers it nothing new', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'drain-linked', [runtime]);
    await agent.connect({ max_runs: 1 });
    const offered = (await admin.submitRun({ runtime, command: ['x'] })).run;
    await agent.waitFor('offer', (m) => m.run.id === offered.id);

    const { workstation: drained } = await admin.drainWorkstation(agent.workstationId);
    expect(drained).toMatchObject({ id: agent.workstationId, status: 'draining' });
    await agent.waitFor('drain');
    expect((await workstation(agent.workstationId))?.status).toBe('draining');
    // The unclaimed offer went back to the queue, and no pass offers it (or a new run) here again.
    const queued = (await admin.submitRun({ runtime, command: ['y'] })).run;
    await h.cp.scheduler.pass();
    await h.cp.scheduler.pass();
    expect((await runOf(offered.id)).status).toBe('queued');
    expect((await runOf(queued.id)).status).toBe('queued');
    // A claim of the withdrawn offer is refused.
    await expect(
      agent.client.claimRun(offered.id, { runner_id: 'r', lease_ms: 30_000 }),
    ).rejects.toMatchObject({ status: 409 });

    // Draining twice is fine and sends drain again.
    agent.messages.length = 0;
    expect((await admin.drainWorkstation(agent.workstationId)).workstation.status).toBe('draining');
    await agent.waitFor('drain');
  });

  it('stays draining while the agent still says it is listening (it may not have heard), and tells it again', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'drain-deaf', [runtime]);
    await agent.registerHttp();
    // No link: the drain can only reach the agent through the answer to its heartbeat.
    await admin.drainWorkstation(agent.workstationId);
    const heartbeat = await agent.client.registerWorkstation({
      display_name: 'drain-deaf',
      cpu_count: 2,
      runtimes: [runtime],
      agent_version: 't',
      listening: true,
    });
    expect(heartbeat.workstation.status).toBe('draining');
    // Its link comes up, still listening: the control plane sends drain on register.
    await agent.connect();
    await agent.waitFor('drain');
    expect((await workstation(agent.workstationId))?.status).toBe('draining');
    const run = (await admin.submitRun({ runtime, command: ['x'] })).run;
    await h.cp.scheduler.pass();
    expect((await runOf(run.id)).status).toBe('queued');
  });

  it('ends when the agent stops listening: the next agent that registers takes runs again', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'drain-restart', [runtime]);
    await agent.connect();
    await admin.drainWorkstation(agent.workstationId);
    await agent.waitFor('drain');
    const run = (await admin.submitRun({ runtime, command: ['x'] })).run;
    // The drained agent's last registration says it no longer listens, then its link closes.
    await agent.registerHttp({ listening: false });
    agent.link!.close();
    await agent.waitClosed();
    await eventually(
      async () => (await workstation(agent.workstationId))?.status === 'offline',
      'offline after the link closed',
    );
    expect((await runOf(run.id)).status).toBe('queued');
    // A new agent process for the same workstation.
    agent.messages.length = 0;
    await agent.connect();
    expect((await workstation(agent.workstationId))?.status).toBe('online');
    await agent.waitFor('offer', (m) => m.run.id === run.id);
    expect(agent.messages.some((m) => m.type === 'drain')).toBe(false);
  });

  it('is taken back by undrain (admin only, 404 when unknown): the workstation is online and offered the queued runs again', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'undrain-box', [runtime]);
    await agent.registerHttp();
    await admin.drainWorkstation(agent.workstationId);
    const run = (await admin.submitRun({ runtime, command: ['x'] })).run;
    await h.cp.scheduler.pass();
    expect((await runOf(run.id)).status).toBe('queued');

    const path = `/api/workstations/${agent.workstationId}/undrain`;
    expect((await h.api(path, { method: 'POST' })).status).toBe(401);
    expect((await h.api(path, { method: 'POST', token: agent.token })).status).toBe(403);
    const unknown = await h.api('/api/workstations/ws_nope/undrain', { method: 'POST', token: h.adminToken });
    expect(unknown.status).toBe(404);
    expect(unknown.json.error.code).toBe('not-found');
    expect((await workstation(agent.workstationId))?.status).toBe('draining');

    const { workstation: undrained } = await admin.undrainWorkstation(agent.workstationId);
    expect(undrained).toMatchObject({ id: agent.workstationId, status: 'online' });
    // Its heartbeat no longer says draining, and the queued run is offered to it (the undrain
    // asked for a pass; the tick would too).
    const heartbeat = await agent.client.registerWorkstation({
      display_name: 'undrain-box',
      cpu_count: 2,
      runtimes: [runtime],
      agent_version: 't',
      listening: true,
    });
    expect(heartbeat.workstation.status).toBe('online');
    await eventually(async () => (await runOf(run.id)).status === 'offered', 'the run offered again');
    expect((await runOf(run.id)).workstation_id).toBe(agent.workstationId);
    // Undrain of a workstation that is not draining is harmless.
    expect((await admin.undrainWorkstation(agent.workstationId)).workstation.status).toBe('online');
  });
});
