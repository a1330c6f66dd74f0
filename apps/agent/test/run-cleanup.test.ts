import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LeaseClient } from '@runt/leases';
import type { ClaimRunResponse } from '@runt/protocol';
import { createFakeRuntime, type FakeRuntime } from '@runt/runtime-spi/fake';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunExecution } from '../src/run-execution.js';
import { RunStateStore } from '../src/run-state-store.js';
import { eventually, startTestControlPlane, testLogger, type TestControlPlane } from './control-plane.js';

let h: TestControlPlane;
beforeAll(async () => {
  h = await startTestControlPlane();
}, 120_000);
afterAll(async () => {
  await h?.close();
});

/** Accepts a claimed run on the fake runtime (through a real control plane) and returns its execution. */
async function accept(claim: ClaimRunResponse, runtime: FakeRuntime): Promise<RunExecution> {
  const dir = mkdtempSync(join(tmpdir(), 'runt-cleanup-'));
  const exec = await RunExecution.accept(
    {
      client: h.ws,
      leases: new LeaseClient({ baseUrl: h.url, token: h.token }),
      runtime,
      store: new RunStateStore(join(dir, 'journal')),
      workRoot: join(dir, 'work'),
      workstationId: h.workstationId,
      runnerId: 'cleanup-runner',
      leaseMs: 30_000,
      stopTimeoutMs: 1_000,
      commandPollMs: () => 1_000,
      logger: testLogger().logger,
    },
    claim,
  );
  return exec!;
}

describe("a run's cleanup", () => {
  it('removes a workload that exited by itself without asking the runtime to stop it', async () => {
    const claim = await h.claimRun(
      { runtime: 'fake', command: ['/bin/sh', '-c', 'echo hi'] },
      'cleanup-runner',
    );
    const runtime = createFakeRuntime();
    await (
      await accept(claim, runtime)
    ).done;
    expect((await h.admin.getRun(claim.run.id)).run.status).toBe('completed');
    expect(runtime.callsOf('stop')).toEqual([]);
    expect(runtime.callsOf('remove')).toHaveLength(1);
    expect(runtime.engine.instances.size).toBe(0);
  });

  it('still stops a cancelled workload before removing it', async () => {
    const claim = await h.claimRun(
      { runtime: 'fake', command: ['/bin/sh', '-c', 'sleep 30'] },
      'cleanup-runner',
    );
    const runtime = createFakeRuntime();
    const exec = await accept(claim, runtime);
    await eventually(() => expect(runtime.callsOf('wait')).toHaveLength(1));
    exec.cancel('stop it');
    await exec.done;
    expect((await h.admin.getRun(claim.run.id)).run.status).toBe('cancelled');
    expect(runtime.callsOf('stop').length).toBeGreaterThanOrEqual(1);
    expect(runtime.calls.map((c) => c.method).lastIndexOf('stop')).toBeLessThan(
      runtime.calls.map((c) => c.method).indexOf('remove'),
    );
    expect(runtime.engine.instances.size).toBe(0);
  });
});
