import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { ControlPlaneClient, type Run } from '@runt/protocol';
import { startHarness, type Harness } from './harness.js';
import { eventually, pairAgent, uniqueRuntime } from './agent-double.js';

describe.each(TEST_BACKENDS)('scheduler on %s', (backend) => {
  let h: Harness;
  let admin: ControlPlaneClient;
  beforeAll(async () => {
    h = await startHarness(backend, {}, { schedulerTickMs: 100, sweepIntervalMs: 100 });
    admin = new ControlPlaneClient({ url: h.cp.url, token: h.adminToken, retries: 0 });
  });
  afterAll(async () => h?.close());

  const statusOf = async (id: string) => (await admin.getRun(id)).run;
  const offeredTo = (id: string) =>
    eventually(async () => {
      const run = await statusOf(id);
      return run.status === 'offered' ? run.workstation_id : undefined;
    }, `run ${id} to be offered`);
  /** No timing assertion: after other work has been placed by later passes, this run is still queued. */
  async function stillQueuedAfterPasses(id: string): Promise<Run> {
    await h.cp.scheduler.pass();
    await h.cp.scheduler.pass();
    return statusOf(id);
  }

  it('honours placement labels: every label must match', async () => {
    const runtime = uniqueRuntime();
    const gpu = await pairAgent(h, 'gpu-box', [runtime]);
    const plain = await pairAgent(h, 'plain-box', [runtime]);
    await gpu.connect({ labels: { gpu: 'yes', zone: 'a' } });
    await plain.connect({ labels: { zone: 'a' } });
    for (let i = 0; i < 3; i++) {
      const { run } = await admin.submitRun({
        runtime,
        command: ['x'],
        placement: { labels: { gpu: 'yes', zone: 'a' } },
      });
      expect(await offeredTo(run.id)).toBe(gpu.workstationId);
    }
    const { run: nowhere } = await admin.submitRun({
      runtime,
      command: ['x'],
      placement: { labels: { gpu: 'yes', zone: 'b' } },
    });
    expect((await stillQueuedAfterPasses(nowhere.id)).status).toBe('queued');
  });

  it('pins a run to placement.workstation_id', async () => {
    const runtime = uniqueRuntime();
    const a = await pairAgent(h, 'pin-a', [runtime]);
    const b = await pairAgent(h, 'pin-b', [runtime]);
    await a.connect();
    await b.connect();
    for (let i = 0; i < 3; i++) {
      const { run } = await admin.submitRun({
        runtime,
        command: ['x'],
        placement: { workstation_id: b.workstationId },
      });
      expect(await offeredTo(run.id)).toBe(b.workstationId);
    }
  });

  it('places only on workstations that offer the runtime and are listening', async () => {
    const runtime = uniqueRuntime();
    const other = uniqueRuntime();
    const right = await pairAgent(h, 'rt-right', [runtime]);
    const wrong = await pairAgent(h, 'rt-wrong', [other]);
    const deaf = await pairAgent(h, 'rt-deaf', [other]);
    await wrong.connect();
    await deaf.registerHttp({ listening: false });
    const { run } = await admin.submitRun({ runtime, command: ['x'] });
    expect((await stillQueuedAfterPasses(run.id)).status).toBe('queued');
    const { run: deafRun } = await admin.submitRun({
      runtime: other,
      command: ['x'],
      placement: { workstation_id: deaf.workstationId },
    });
    await right.connect();
    expect(await offeredTo(run.id)).toBe(right.workstationId);
    expect((await stillQueuedAfterPasses(deafRun.id)).status).toBe('queued');
  });

  it('respects capacity: a full workstation keeps runs queued until one finishes', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'small-box', [runtime]);
    await agent.connect({ cpu_count: 8, max_runs: 2 });
    const runs: Run[] = [];
    for (let i = 0; i < 3; i++) runs.push((await admin.submitRun({ runtime, command: [`${i}`] })).run);
    await offeredTo(runs[0]!.id);
    await offeredTo(runs[1]!.id);
    expect((await stillQueuedAfterPasses(runs[2]!.id)).status).toBe('queued');
    const claim = await agent.client.claimRun(runs[0]!.id, { runner_id: 'r', lease_ms: 30_000 });
    await agent.client.reportStatus(runs[0]!.id, {
      fencing_token: claim.fencing_token,
      status: 'completed',
      exit_code: 0,
    });
    expect(await offeredTo(runs[2]!.id)).toBe(agent.workstationId);
    const offer = await agent.waitFor('offer', (m) => m.run.id === runs[2]!.id);
    expect(offer.run.status).toBe('offered');
  });

  it('defaults max_runs to cpu_count and counts cpus and memory when a run asks for them', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'cpu-box', [runtime]);
    await agent.connect({ cpu_count: 2, memory_bytes: 1000 });
    const big = (await admin.submitRun({ runtime, command: ['x'], resources: { cpus: 3 } })).run;
    const fat = (await admin.submitRun({ runtime, command: ['x'], resources: { memory_bytes: 2000 } })).run;
    const one = (
      await admin.submitRun({ runtime, command: ['x'], resources: { cpus: 1.5, memory_bytes: 600 } })
    ).run;
    expect(await offeredTo(one.id)).toBe(agent.workstationId);
    const two = (
      await admin.submitRun({ runtime, command: ['x'], resources: { cpus: 1, memory_bytes: 100 } })
    ).run;
    expect((await stillQueuedAfterPasses(two.id)).status).toBe('queued'); // only 0.5 cpus left
    const three = (await admin.submitRun({ runtime, command: ['x'] })).run;
    expect(await offeredTo(three.id)).toBe(agent.workstationId); // a second slot: max_runs = cpu_count = 2
    const four = (await admin.submitRun({ runtime, command: ['x'] })).run;
    expect((await stillQueuedAfterPasses(four.id)).status).toBe('queued');
    expect((await statusOf(big.id)).status).toBe('queued');
    expect((await statusOf(fat.id)).status).toBe('queued');
  });

  it('recomputes committed capacity from the database when an agent reconnects, and re-sends its offers', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'comeback-box', [runtime]);
    await agent.connect({ max_runs: 1 });
    const first = (await admin.submitRun({ runtime, command: ['x'] })).run;
    await agent.waitFor('offer', (m) => m.run.id === first.id);
    const second = (await admin.submitRun({ runtime, command: ['x'] })).run;
    agent.link!.close();
    await agent.waitClosed();
    agent.messages.length = 0;
    await agent.connect({ max_runs: 1 });
    // The offer it may have missed comes again; the slot is still taken, so nothing more.
    await agent.waitFor('offer', (m) => m.run.id === first.id);
    expect((await stillQueuedAfterPasses(second.id)).status).toBe('queued');
  });

  it('offers each run once even when several passes race', async () => {
    const runtime = uniqueRuntime();
    const agents = await Promise.all([0, 1, 2].map((i) => pairAgent(h, `race-${i}`, [runtime])));
    for (const a of agents) await a.connect({ max_runs: 3 });
    const ids: string[] = [];
    for (let i = 0; i < 9; i++) ids.push((await admin.submitRun({ runtime, command: [`${i}`] })).run.id);
    await Promise.all([h.cp.scheduler.pass(), h.cp.scheduler.pass(), h.cp.scheduler.pass()]);
    await eventually(
      async () => (await admin.listRuns({ runtime, status: 'offered' })).runs.length === 9,
      'all 9 offered',
    );
    const offersOf = () =>
      agents.flatMap((a) =>
        a.messages
          .filter((m) => m.type === 'offer' && ids.includes(m.run.id))
          .map((m) => (m as { run: Run }).run.id),
      );
    await eventually(() => offersOf().length >= 9, 'the 9 offers to arrive');
    const offers = offersOf();
    expect(offers).toHaveLength(9);
    expect(new Set(offers).size).toBe(9);
    const perAgent = agents.map((a) => a.messages.filter((m) => m.type === 'offer').length);
    expect(perAgent.every((n) => n <= 3)).toBe(true);
  });
});

// A slow tick and sweep, so only a kick can place a run in time: a run the last pass could not
// place (no workstation offers its runtime, or every one that does is full) must not hold up a
// placeable submit until the tick.
describe.each(TEST_BACKENDS)('scheduler after an unplaceable run, on %s', (backend) => {
  const TICK_MS = 60_000;
  let h: Harness;
  let admin: ControlPlaneClient;
  beforeAll(async () => {
    h = await startHarness(backend, {}, { schedulerTickMs: TICK_MS, sweepIntervalMs: TICK_MS });
    admin = new ControlPlaneClient({ url: h.cp.url, token: h.adminToken, retries: 0 });
  });
  afterAll(async () => h?.close());

  /** The offer reaches the agent well before the tick (eventually gives up after 15 s). */
  async function offeredPromptly(agent: Awaited<ReturnType<typeof pairAgent>>, runtime: string) {
    const t0 = Date.now();
    const { run } = await admin.submitRun({ runtime, command: ['x'] });
    await agent.waitFor('offer', (m) => m.run.id === run.id);
    expect(Date.now() - t0).toBeLessThan(TICK_MS / 4);
  }

  it('offers a new run at once after a pass found no workstation for a queued one', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'after-nowhere', [runtime]);
    await agent.connect();
    const { run: nowhere } = await admin.submitRun({ runtime: uniqueRuntime(), command: ['x'] });
    await h.cp.scheduler.pass(); // leaves `nowhere` queued
    await offeredPromptly(agent, runtime);
    expect((await admin.getRun(nowhere.id)).run.status).toBe('queued');
  });

  it('offers a new run at once after a pass found every matching workstation full', async () => {
    const busy = uniqueRuntime();
    const full = await pairAgent(h, 'full-box', [busy]);
    await full.connect({ max_runs: 1 });
    const { run: first } = await admin.submitRun({ runtime: busy, command: ['x'] });
    await full.waitFor('offer', (m) => m.run.id === first.id);
    const { run: waiting } = await admin.submitRun({ runtime: busy, command: ['x'] });
    await h.cp.scheduler.pass(); // leaves `waiting` queued: its only workstation is full
    const runtime = uniqueRuntime();
    const free = await pairAgent(h, 'free-box', [runtime]);
    await free.connect();
    await h.cp.scheduler.pass();
    await offeredPromptly(free, runtime);
    expect((await admin.getRun(waiting.id)).run.status).toBe('queued');
  });
});

// The queue is read a page (200 runs) at a time: a first page that cannot be placed — no
// workstation for its runtime, or its workstations filled by this very pass — must not hide a
// placeable run behind it (it was never offered: the pass stopped at the first page).
describe.each(TEST_BACKENDS)('scheduler behind a full page of unplaceable runs, on %s', (backend) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(backend, {}, { schedulerTickMs: 100, sweepIntervalMs: 100 });
  });
  afterAll(async () => h?.close());

  const submitBatch = async (runs: Array<{ runtime: string }>) => {
    const r = await h.api('/api/runs/batch', {
      token: h.adminToken,
      body: { runs: runs.map((x) => ({ ...x, command: ['x'] })) },
    });
    expect(r.status).toBe(201);
    return r.json.runs as Array<{ run: { id: string } }>;
  };

  it('offers a run queued behind a page of runs whose only workstation this pass filled', async () => {
    const busy = uniqueRuntime();
    const small = await pairAgent(h, 'small-box', [busy]);
    await small.connect({ max_runs: 2 });
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'behind-full', [runtime]);
    await agent.connect();
    // 202: once two are offered, a whole page of them is still queued ahead of the placeable run.
    const out = await submitBatch([...Array.from({ length: 202 }, () => ({ runtime: busy })), { runtime }]);
    await h.cp.scheduler.pass();
    await agent.waitFor('offer', (m) => m.run.id === out[202]!.run.id);
    expect(small.messages.filter((m) => m.type === 'offer')).toHaveLength(2);
  });

  it('offers a run queued behind 200 runs no workstation offers a runtime for', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'behind-nowhere', [runtime]);
    await agent.connect();
    const nowhere = uniqueRuntime();
    const out = await submitBatch([
      ...Array.from({ length: 200 }, () => ({ runtime: nowhere })),
      { runtime },
    ]);
    await h.cp.scheduler.pass();
    await agent.waitFor('offer', (m) => m.run.id === out[200]!.run.id);
  });
});
