import { rmSync } from 'node:fs';
import { RuntimeRegistry, type Runtime } from '@runt/runtime-spi';
import { createFakeRuntime, type FakeRuntime } from '@runt/runtime-spi/fake';
import type { RunStatus } from '@runt/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../src/agent.js';
import { RUN_ID_LABEL } from '../src/run-prepare.js';
import {
  agentStateDir,
  eventually,
  startTestControlPlane,
  testAgent,
  testLogger,
  type TestControlPlane,
} from './control-plane.js';

let h: TestControlPlane;
beforeAll(async () => {
  h = await startTestControlPlane();
}, 120_000);
afterAll(async () => {
  await h?.close();
});

/**
 * A fake runtime that keeps what the test asks of it: the runs whose instance was created, the
 * runs started (in order), and the most workloads it ever had going at once (from each start to
 * the end of its wait).
 */
function watchedRuntime(): {
  runtime: FakeRuntime;
  registry: RuntimeRegistry;
  created: string[];
  started: string[];
  maxAtOnce: () => number;
} {
  const runtime = createFakeRuntime();
  const runOf = new Map<string, string>();
  const created: string[] = [];
  const started: string[] = [];
  let going = 0;
  let most = 0;
  const create = runtime.create.bind(runtime);
  const start = runtime.start.bind(runtime);
  const wait = runtime.wait.bind(runtime);
  Object.assign(runtime, {
    create: (async (spec, opts) => {
      const inst = await create(spec, opts);
      const runId = spec.labels?.[RUN_ID_LABEL] ?? '';
      runOf.set(inst.id, runId);
      created.push(runId);
      return inst;
    }) satisfies Runtime['create'],
    start: (async (id, opts) => {
      started.push(runOf.get(id) ?? id);
      most = Math.max(most, ++going);
      try {
        return await start(id, opts);
      } catch (e) {
        going--;
        throw e;
      }
    }) satisfies Runtime['start'],
    wait: (async (id, opts) => {
      try {
        return await wait(id, opts);
      } finally {
        if (started.includes(runOf.get(id) ?? id)) going--;
      }
    }) satisfies Runtime['wait'],
  });
  return {
    runtime,
    registry: new RuntimeRegistry().register('fake', () => runtime),
    created,
    started,
    maxAtOnce: () => most,
  };
}

const status = async (id: string): Promise<RunStatus> => (await h.admin.getRun(id)).run.status;
const ended = (id: string) =>
  eventually(async () => {
    const s = await status(id);
    return s === 'completed' || s === 'failed' || s === 'cancelled' ? s : undefined;
  }, `${id} ended`);

async function withAgent<T>(
  opts: { maxRuns: number; prefetch: number; registry: RuntimeRegistry },
  body: (agent: Agent) => Promise<T>,
): Promise<T> {
  const dir = agentStateDir('runt-prefetch-');
  const agent = testAgent({
    url: h.url,
    token: h.token,
    stateDir: dir,
    linkJitter: { startMs: 0 },
    logger: testLogger().logger,
    ...opts,
  });
  const running = agent.run();
  try {
    await eventually(() => agent.state === 'running', 'the agent running');
    return await body(agent);
  } finally {
    await agent.shutdown({ graceMs: 0 });
    await running;
    rmSync(dir, { recursive: true, force: true });
  }
}

const submit = async (command: string, over: { timeout_s?: number } = {}): Promise<string> =>
  (await h.admin.submitRun({ runtime: 'fake', command: ['/bin/sh', '-c', command], ...over })).run.id;

// Issue 9, throughput: `--prefetch N` takes runs ahead of a free slot, so a slot that frees has
// its next run claimed, created and journaled here already (no round trip to the control plane).
describe('an agent with --prefetch', () => {
  it('--max-runs 1 --prefetch 2: holds 3 runs, runs one workload at a time, each once, in order', async () => {
    const w = watchedRuntime();
    await withAgent({ maxRuns: 1, prefetch: 2, registry: w.registry }, async (agent) => {
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push(await submit('sleep 0.6; exit 0'));
      // all three held while the first one runs: the other two wait for its slot
      await eventually(() => agent.runningRunIds.length === 3, 'the agent holds 3 runs');
      expect(w.started.length).toBeLessThanOrEqual(1);
      expect([...w.created].sort()).toEqual([...ids].sort()); // created (and journaled) while they wait
      for (const id of ids) expect(await ended(id)).toBe('completed');
      // in the order taken (the control plane's offers: over HTTP before the link is up, then on it)
      expect(w.started).toEqual(w.created);
      expect(w.maxAtOnce()).toBe(1);
      // started one after the other, each once: three attempts' worth of runs, one attempt each
      for (const id of ids) expect((await h.admin.getRun(id)).run.attempt).toBe(1);
    });
  }, 60_000);

  it('a cancel of a run waiting for a slot ends it cancelled without ever starting it', async () => {
    const w = watchedRuntime();
    await withAgent({ maxRuns: 1, prefetch: 1, registry: w.registry }, async (agent) => {
      const first = await submit('sleep 30');
      await eventually(() => w.started.includes(first), 'the first run started');
      const queued = await submit('exit 0');
      await eventually(() => w.created.includes(queued), 'the second run created, waiting');
      expect(agent.runningRunIds).toContain(queued);
      await h.admin.cancelRun(queued);
      expect(await ended(queued)).toBe('cancelled');
      expect(w.started).toEqual([first]);
      // its instance is gone; the first run goes on
      await eventually(
        async () => (await w.runtime.list({ labels: { [RUN_ID_LABEL]: queued } })).length === 0,
        'the queued instance removed',
      );
      expect(await status(first)).toBe('running');
      await h.admin.cancelRun(first);
      expect(await ended(first)).toBe('cancelled');
    });
  }, 60_000);

  it('the timeout counts from the start, not from the wait for a slot', async () => {
    const w = watchedRuntime();
    await withAgent({ maxRuns: 1, prefetch: 1, registry: w.registry }, async () => {
      const first = await submit('sleep 2.5; exit 0');
      await eventually(() => w.started.includes(first), 'the first run started');
      // waits ~2.5 s for the slot, longer than its 1 s timeout; runs 0.3 s once started
      const queued = await submit('sleep 0.3; exit 0', { timeout_s: 1 });
      await eventually(() => w.created.includes(queued), 'the second run created, waiting');
      expect(await status(first)).toBe('running'); // taken ahead of its slot: it waits
      expect(await ended(first)).toBe('completed');
      expect(await ended(queued)).toBe('completed');
      expect((await h.admin.getRun(queued)).run.failure_kind).toBeNull();
    });
  }, 60_000);

  it('--prefetch 0 takes no more runs than --max-runs', async () => {
    const w = watchedRuntime();
    await withAgent({ maxRuns: 1, prefetch: 0, registry: w.registry }, async (agent) => {
      const first = await submit('sleep 30');
      await eventually(() => w.started.includes(first), 'the first run started');
      const next = await submit('exit 0');
      await new Promise((r) => setTimeout(r, 1_000));
      expect(agent.runningRunIds).toEqual([first]);
      expect(w.created).toEqual([first]);
      expect(await status(next)).toBe('queued');
      await h.admin.cancelRun(first);
      expect(await ended(next)).toBe('completed');
    });
  }, 60_000);

  it('a stop hands the runs waiting for a slot back at once; the running one finishes', async () => {
    const w = watchedRuntime();
    const dir = agentStateDir('runt-prefetch-stop-');
    const agent = testAgent({
      url: h.url,
      token: h.token,
      stateDir: dir,
      maxRuns: 1,
      prefetch: 2,
      registry: w.registry,
      linkJitter: { startMs: 0 },
    });
    const running = agent.run();
    const waiting: string[] = [];
    try {
      await eventually(() => agent.state === 'running', 'the agent running');
      const first = await submit('sleep 1.5; exit 0');
      await eventually(() => w.started.includes(first), 'the first run started');
      waiting.push(await submit('exit 0'), await submit('exit 0'));
      await eventually(() => waiting.every((id) => w.created.includes(id)), 'two runs waiting');
      const stopped = agent.shutdown({ graceMs: 60_000 });
      // handed back while the first run still runs: not held through the stop
      await eventually(
        async () => (await Promise.all(waiting.map(status))).every((s) => s === 'queued'),
        'the waiting runs back in the queue',
      );
      expect(await status(first)).toBe('running');
      await stopped;
      expect(await status(first)).toBe('completed');
      expect(w.started).toEqual([first]);
    } finally {
      await agent.shutdown({ graceMs: 0 });
      await running;
      rmSync(dir, { recursive: true, force: true });
    }
    // and they run (once) on the next agent
    const next = watchedRuntime();
    await withAgent({ maxRuns: 2, prefetch: 0, registry: next.registry }, async () => {
      for (const id of waiting) expect(await ended(id)).toBe('completed');
    });
    expect(next.started.filter((id) => waiting.includes(id)).sort()).toEqual([...waiting].sort());
  }, 60_000);
});
