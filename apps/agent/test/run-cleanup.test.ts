import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { join } from 'node:path';
import { LeaseClient } from '@runt/leases';
import { ControlPlaneClient, type ClaimRunResponse } from '@runt/protocol';
import type { LogChunk } from '@runt/runtime-spi';
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
async function accept(claim: ClaimRunResponse, runtime: FakeRuntime, client = h.ws): Promise<RunExecution> {
  const dir = mkdtempSync(join(tmpdir(), 'runt-cleanup-'));
  const exec = await RunExecution.accept(
    {
      client,
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

/**
 * `fake` with a follow that does not end with the instance (a runtime whose log stream lags or
 * hangs): `first` at once, `late` after `lateMs`, then nothing until the follow's signal aborts.
 * `on` hears the follow's signal, the late chunk handled (the follow asked for the next one) and
 * the stream's end.
 */
function laggingLogs(
  fake: FakeRuntime,
  first: string,
  late: string,
  lateMs: number,
  on: { followed?: (signal?: AbortSignal) => void; lateRead?: () => void; ended?: () => void } = {},
): FakeRuntime {
  return {
    ...fake,
    async *logs(_id: string, opts?: { follow?: boolean; signal?: AbortSignal }): AsyncIterable<LogChunk> {
      const signal = opts?.signal;
      on.followed?.(signal);
      try {
        yield { stream: 'stdout', data: first, at: new Date().toISOString() };
        await new Promise((r) => setTimeout(r, lateMs));
        yield { stream: 'stdout', data: late, at: new Date().toISOString() };
        on.lateRead?.();
        await new Promise<void>((r) => {
          if (signal?.aborted) r();
          else signal?.addEventListener('abort', () => r(), { once: true });
        });
        throw new Error('aborted');
      } finally {
        on.ended?.();
      }
    },
  };
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

  it('reports a run whose output follow goes on after the exit, drops what it reads after the tail wait and stops it with the run', async () => {
    const claim = await h.claimRun({ runtime: 'fake', command: ['/bin/sh', '-c', 'true'] }, 'cleanup-runner');
    const fake = createFakeRuntime();
    let followSignal: AbortSignal | undefined;
    let followEnded = false;
    // One more chunk after the agent's 5 s tail wait.
    const runtime = laggingLogs(fake, 'before the exit\n', 'after the tail wait\n', 6_500, {
      followed: (signal) => (followSignal = signal),
      ended: () => (followEnded = true),
    });
    await (
      await accept(claim, runtime)
    ).done;
    expect((await h.admin.getRun(claim.run.id)).run.status).toBe('completed');
    const logged = (await h.admin.listEvents(claim.run.id)).events
      .filter((e) => e.type === 'log')
      .map((e) => (e.payload as { data: string }).data);
    expect(logged).toEqual(['before the exit\n']);
    await eventually(() => expect(followEnded).toBe(true));
    expect(followSignal?.aborted).toBe(true);
    // The follow and the wait run under one signal, the run's work (one AbortSignal a run).
    const waited = fake.callsOf('wait')[0]!.args[1] as { signal?: AbortSignal };
    expect(waited.signal).toBe(followSignal);
  }, 20_000);

  it('does not act on a ready line read after the output closed: the run reports its end only', async () => {
    const claim = await h.claimRun(
      { runtime: 'fake', command: ['/bin/sh', '-c', 'true'], ready_when: { log_line: 'ready' } },
      'cleanup-runner',
    );
    let lateRead!: () => void;
    const lateLineRead = new Promise<void>((r) => (lateRead = r));
    // The ready line comes after the agent's 5 s tail wait (1.5 s of room for a loaded machine).
    const runtime = laggingLogs(createFakeRuntime(), 'booting\n', 'ready\n', 6_500, { lateRead });
    // The workstation's real client; the terminal report is answered once the late line was read
    // (a control plane slow to answer), so a report it caused would go out while the run ends.
    const client = new ControlPlaneClient({ url: h.url, token: h.token, nodeHttp: true });
    const reported: string[] = [];
    const brief = client.reportStatusBrief.bind(client);
    client.reportStatusBrief = async (runId, body) => {
      reported.push(body.status);
      if (body.status !== 'running') await lateLineRead.then(() => new Promise((r) => setTimeout(r, 200)));
      return brief(runId, body);
    };
    await (
      await accept(claim, runtime, client)
    ).done;
    expect((await h.admin.getRun(claim.run.id)).run.status).toBe('completed');
    expect(reported).toEqual(['completed']);
  }, 20_000);

  it('keeps no reference to the offered run once its workload runs', async () => {
    const runtime = createFakeRuntime();
    // The claim is held only inside this function: what keeps its run alive afterwards is the agent's.
    const { runId, offered, exec } = await (async () => {
      const claim = await h.claimRun(
        { runtime: 'fake', command: ['/bin/sh', '-c', 'sleep 30'] },
        'cleanup-runner',
      );
      return { runId: claim.run.id, offered: new WeakRef(claim.run), exec: await accept(claim, runtime) };
    })();
    await eventually(() => expect(runtime.callsOf('wait')).toHaveLength(1));
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    // a boolean, not an expectation: a failed one would hold the run itself and keep it alive
    await eventually(() => {
      gc();
      return offered.deref() === undefined;
    }, 'the offered run collected');
    exec.cancel('stop it');
    await exec.done;
    expect((await h.admin.getRun(runId)).run.status).toBe('cancelled');
  });
});
