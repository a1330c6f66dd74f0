import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFakeRuntime } from '@runt/runtime-spi/fake';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readoptRuns, type ConfirmedLease } from '../src/readopt-runs.js';
import { RUN_ID_LABEL, WORKSTATION_LABEL } from '../src/run-prepare.js';
import { RunStateStore, type RunState } from '../src/run-state-store.js';
import { startTestControlPlane, testLogger, type TestControlPlane } from './control-plane.js';

let h: TestControlPlane;
beforeAll(async () => {
  h = await startTestControlPlane();
});
afterAll(async () => {
  await h?.close();
});

describe('readoptRuns against a real control plane, the fake runtime and real state files', () => {
  it('resumes live runs whose lease is ours, re-queues runs never started, fails runs whose workload vanished, stops what is not ours', async () => {
    const runtime = createFakeRuntime();
    const store = new RunStateStore(join(mkdtempSync(join(tmpdir(), 'runt-readopt-')), 'journal'));
    const labels = (runId: string) => ({ [RUN_ID_LABEL]: runId, [WORKSTATION_LABEL]: h.workstationId });
    const stateOf = (
      claim: Awaited<ReturnType<TestControlPlane['claimRun']>>,
      over: Partial<RunState> = {},
    ): RunState => ({
      run_id: claim.run.id,
      runtime: 'fake',
      runner_id: 'unit-runner',
      fencing_token: claim.fencing_token,
      next_seq: claim.next_event_seq,
      log_chars: { stdout: 0, stderr: 0 },
      ready: true,
      command_seq: 0,
      ...over,
    });

    // alive: instance running, state saved, lease ours → adopted
    const alive = await h.claimRun({ runtime: 'fake', command: ['x'] });
    const aliveInst = await runtime.create({
      name: 'alive',
      command: ['/bin/sh', '-c', 'sleep infinity'],
      sourcePath: '/tmp',
      labels: labels(alive.run.id),
    });
    await runtime.start(aliveInst.id);
    await store.save(stateOf(alive, { instance_id: aliveInst.id }));
    // vanished: state saved, lease ours, no instance → failed (internal) and released
    const vanished = await h.claimRun({ runtime: 'fake', command: ['x'] });
    await store.save(stateOf(vanished, { instance_id: 'gone' }));
    // never started: claimed, state saved, died before the instance id was saved → released, re-queued (defect 6)
    const unstarted = await h.claimRun({ runtime: 'fake', command: ['x'] });
    await store.save(stateOf(unstarted));
    // …also when the instance was created (not started) before the agent died
    const created = await h.claimRun({ runtime: 'fake', command: ['x'] });
    await runtime.create({
      name: 'created',
      command: ['/bin/sh', '-c', 'sleep infinity'],
      sourcePath: '/tmp',
      labels: labels(created.run.id),
    });
    await store.save(stateOf(created));
    // stale: instance and state, but the saved token is not the lease's → stopped and forgotten
    const stale = await h.claimRun({ runtime: 'fake', command: ['x'] });
    const staleInst = await runtime.create({
      name: 'stale',
      command: ['/bin/sh', '-c', 'sleep infinity'],
      sourcePath: '/tmp',
      labels: labels(stale.run.id),
    });
    await runtime.start(staleInst.id);
    await store.save(stateOf(stale, { instance_id: staleInst.id, fencing_token: stale.fencing_token + 5 }));
    // orphan: an instance of ours with no state at all → stopped and removed
    const orphan = await runtime.create({
      name: 'orphan',
      command: ['/bin/sh', '-c', 'sleep infinity'],
      sourcePath: '/tmp',
      labels: labels('run_unknown'),
    });
    // someone else's instance (another workstation's label) → left alone
    const foreign = await runtime.create({
      name: 'foreign',
      command: ['/bin/sh', '-c', 'sleep infinity'],
      sourcePath: '/tmp',
      labels: { [RUN_ID_LABEL]: 'run_x', [WORKSTATION_LABEL]: 'ws_other' },
    });

    const adopted: Array<{ runtime: string; state: RunState; confirmed: ConfirmedLease }> = [];
    const before = performance.now();
    await readoptRuns({
      client: h.ws,
      runtimes: new Map([['fake', runtime]]),
      store,
      workstationId: h.workstationId,
      leaseMs: 30_000,
      stopTimeoutMs: 1_000,
      adopt: (name, state, confirmed) => adopted.push({ runtime: name, state, confirmed }),
      logger: testLogger().logger,
    });

    expect(adopted.map((a) => [a.runtime, a.state.run_id])).toEqual([['fake', alive.run.id]]);
    expect(adopted[0]!.confirmed.sentAt).toBeGreaterThanOrEqual(before);
    expect(Date.parse(adopted[0]!.confirmed.expiresAt)).toBeGreaterThan(Date.now());
    expect((await store.list()).map((s) => s.run_id)).toEqual([alive.run.id]);
    expect((await h.admin.getRun(vanished.run.id)).run).toMatchObject({
      status: 'failed',
      failure_kind: 'internal',
      failure_message: 'the workload disappeared while the agent was down',
    });
    for (const r of [unstarted, created]) {
      const run = (await h.admin.getRun(r.run.id)).run;
      expect(run).toMatchObject({ attempt: 2, lease: null, failure_kind: null });
      expect(['queued', 'offered']).toContain(run.status);
    }
    expect((await h.admin.getRun(stale.run.id)).run.status).toBe('accepted');
    const left = (await runtime.list()).map((i) => i.name).sort();
    expect(left).toEqual(['alive', 'foreign']);
    expect((await runtime.inspect(foreign.id))?.state).not.toBe('exited');
    void orphan;
    await runtime.close();
  });
});
