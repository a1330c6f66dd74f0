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
});
