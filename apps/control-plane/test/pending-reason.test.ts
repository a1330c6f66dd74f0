import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { ControlPlaneClient } from '@runt/protocol';
import { startHarness, type Harness } from './harness.js';
import { eventually, pairAgent, uniqueRuntime } from './agent-double.js';

describe.each(TEST_BACKENDS)('pending_reason on %s', (backend) => {
  let h: Harness;
  let admin: ControlPlaneClient;
  beforeAll(async () => {
    h = await startHarness(backend, {}, { schedulerTickMs: 100, sweepIntervalMs: 100 });
    admin = new ControlPlaneClient({ url: h.cp.url, token: h.adminToken, retries: 0 });
  });
  afterAll(async () => h?.close());

  const read = async (id: string) => {
    await h.cp.scheduler.pass();
    return (await admin.getRun(id)).run;
  };

  it('says no workstation offers the runtime', async () => {
    const runtime = uniqueRuntime();
    const { run } = await admin.submitRun({ runtime, command: ['x'] });
    const got = await read(run.id);
    expect(got.status).toBe('queued');
    expect(got.pending_reason).toEqual({
      code: 'no-runtime',
      message: expect.stringContaining(`no workstation offers runtime "${runtime}"`),
    });
    const listed = (await admin.listRuns({ runtime })).runs.find((r) => r.id === run.id);
    expect(listed?.pending_reason?.code).toBe('no-runtime');
  });

  it('says no workstation with the runtime matches the labels', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'labelled', [runtime]);
    await agent.connect({ labels: { pool: 'a' } });
    const { run } = await admin.submitRun({
      runtime,
      command: ['x'],
      placement: { labels: { pool: 'zzz' } },
    });
    expect((await read(run.id)).pending_reason).toEqual({
      code: 'no-label-match',
      message: `no workstation with runtime "${runtime}" matches labels pool=zzz`,
    });
  });

  it('says every matching workstation is offline or draining, and clears once one can take it', async () => {
    const runtime = uniqueRuntime();
    const deaf = await pairAgent(h, 'deaf', [runtime]);
    await deaf.registerHttp({ listening: false });
    const { run } = await admin.submitRun({ runtime, command: ['x'] });
    expect((await read(run.id)).pending_reason).toEqual({
      code: 'offline',
      message: 'the matching workstation is offline or draining',
    });
    const live = await pairAgent(h, 'live', [runtime]);
    await live.connect();
    const offered = await eventually(async () => {
      const r = (await admin.getRun(run.id)).run;
      return r.status === 'offered' ? r : undefined;
    }, 'the run to be offered');
    expect(offered.pending_reason).toBeNull();
  });

  it('says every matching workstation is full', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'one-slot', [runtime]);
    await agent.connect({ cpu_count: 4, max_runs: 1 });
    const { run: first } = await admin.submitRun({ runtime, command: ['1'] });
    const { run: second } = await admin.submitRun({ runtime, command: ['2'] });
    await eventually(
      async () => ((await admin.getRun(first.id)).run.status === 'offered' ? true : undefined),
      'the first run to be offered',
    );
    const got = await read(second.id);
    expect(got.status).toBe('queued');
    expect(got.pending_reason?.code).toBe('full');
    expect(got.pending_reason?.message).toMatch(/^the matching workstation is full \(1 run placed/);
  });

  it('counts the runs an agent takes ahead of a free slot (prefetch) as room, then says it is full', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'prefetching', [runtime]);
    await agent.connect({ cpu_count: 4, max_runs: 1, prefetch: 2 });
    expect(
      (await admin.listWorkstations()).workstations.find((w) => w.display_name === 'prefetching'),
    ).toMatchObject({
      max_runs: 1,
      prefetch: 2,
    });
    const ids: string[] = [];
    for (const n of ['1', '2', '3', '4']) ids.push((await admin.submitRun({ runtime, command: [n] })).run.id);
    await eventually(async () => {
      const s = await Promise.all(ids.slice(0, 3).map(async (id) => (await admin.getRun(id)).run.status));
      return s.every((x) => x === 'offered') ? true : undefined;
    }, 'the slot and the two runs ahead of it to be offered');
    const fourth = await read(ids[3]!);
    expect(fourth.status).toBe('queued');
    expect(fourth.pending_reason?.code).toBe('full');
    expect(fourth.pending_reason?.message).toMatch(/^the matching workstation is full \(3 runs placed/);
  });

  it('keeps the prefetch an HTTP registration sends, and one that sends none leaves it', async () => {
    const agent = await pairAgent(h, 'http-prefetch', [uniqueRuntime()]);
    const find = async () =>
      (await admin.listWorkstations()).workstations.find((w) => w.display_name === 'http-prefetch');
    expect((await find())?.prefetch).toBe(0);
    await agent.registerHttp({ listening: false, max_runs: 2, prefetch: 3 });
    expect(await find()).toMatchObject({ max_runs: 2, prefetch: 3 });
    await agent.registerHttp({ listening: false });
    expect(await find()).toMatchObject({ max_runs: 2, prefetch: 3 });
  });
});
