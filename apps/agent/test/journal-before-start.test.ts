import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LeaseClient } from '@runt/leases';
import type { ClaimRunResponse } from '@runt/protocol';
import type { Runtime } from '@runt/runtime-spi';
import { createFakeRuntime } from '@runt/runtime-spi/fake';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunExecution } from '../src/run-execution.js';
import { RunStateStore, type RunState } from '../src/run-state-store.js';
import { startTestControlPlane, testLogger, type TestControlPlane } from './control-plane.js';

let h: TestControlPlane;
beforeAll(async () => {
  h = await startTestControlPlane();
}, 120_000);
afterAll(async () => {
  await h?.close();
});

/** Accepts a claimed run with this journal and runtime (work under `dir`) and waits for its end. */
async function runToEnd(
  claim: ClaimRunResponse,
  runtime: Runtime,
  store: RunStateStore,
  dir: string,
  runnerId: string,
): Promise<void> {
  const exec = await RunExecution.accept(
    {
      client: h.ws,
      leases: new LeaseClient({ baseUrl: h.url, token: h.token }),
      runtime,
      store,
      workRoot: join(dir, 'work'),
      workstationId: h.workstationId,
      runnerId,
      leaseMs: 30_000,
      stopTimeoutMs: 1_000,
      commandPollMs: () => 1_000,
      logger: testLogger().logger,
    },
    claim,
  );
  await exec!.done;
}

/** A journal whose write of an instance id fails (a full disk, an I/O error). */
class InstanceSaveFails extends RunStateStore {
  override async save(state: RunState): Promise<void> {
    if (state.instance_id !== undefined) throw new Error('EIO: the journal write failed');
    return super.save(state);
  }
}

describe('a workload starts only once its run is durable in the journal (issue 8)', () => {
  it('does not start the workload when saving its instance id fails, and reports the start failed', async () => {
    const claim = await h.claimRun(
      { runtime: 'fake', command: ['/bin/sh', '-c', 'exit 0'] },
      'journal-runner',
    );
    const rt = createFakeRuntime();
    const start = rt.start.bind(rt);
    let starts = 0;
    const runtime = Object.assign(rt, {
      start: ((id, opts) => {
        starts++;
        return start(id, opts);
      }) satisfies Runtime['start'],
    });
    const dir = mkdtempSync(join(tmpdir(), 'runt-journal-first-'));
    const store = new InstanceSaveFails(join(dir, 'journal'));
    await runToEnd(claim, runtime, store, dir, 'journal-runner');
    // A restarted agent would release a run with no saved instance id as never started: had it
    // started, it could run twice.
    expect(starts).toBe(0);
    expect((await h.admin.getRun(claim.run.id)).run).toMatchObject({
      status: 'failed',
      failure_kind: 'start-failed',
    });
    expect(await rt.list()).toEqual([]);
    await store.close();
    await rt.close();
  });
});

describe('a fast run costs the journal one synced write (issue 9)', () => {
  it('journals the claim and the instance id in one synced batch; running, the output position and the removal ride unsynced', async () => {
    const claim = await h.claimRun(
      { runtime: 'fake', command: ['/bin/sh', '-c', 'exit 0'] },
      'one-sync-runner',
    );
    const runtime = createFakeRuntime();
    const dir = mkdtempSync(join(tmpdir(), 'runt-journal-one-'));
    // A wide window: the claim's save and the instance's land in it however loaded the machine.
    const store = new RunStateStore(join(dir, 'journal'), { windowMs: 200, lazyMs: 60_000 });
    await store.list(); // opened (that rewrite is no batch)
    await runToEnd(claim, runtime, store, dir, 'one-sync-runner');
    expect((await h.admin.getRun(claim.run.id)).run).toMatchObject({ status: 'completed' });
    // One batch, one record (the claim's state replaced by the instance's in the window), one fsync.
    expect(store.stats).toMatchObject({ batches: 1, records: 1, syncs: 1 });
    expect(await store.list()).toEqual([]);
    await store.close();
    const again = new RunStateStore(join(dir, 'journal'));
    expect(await again.list()).toEqual([]);
    await again.close();
    await runtime.close();
  });

  it('journals them in one synced batch with the default window however long creating takes', async () => {
    const claim = await h.claimRun(
      { runtime: 'fake', command: ['/bin/sh', '-c', 'exit 0'] },
      'slow-create-runner',
    );
    // Creating takes longer than any window (a runtime that creates through I/O): the claim's
    // record is noted, not synced on its own, so it waits for the instance's (one fsync, not two).
    const runtime = createFakeRuntime({ delays: { create: 30 } });
    const dir = mkdtempSync(join(tmpdir(), 'runt-journal-slow-'));
    const store = new RunStateStore(join(dir, 'journal'), { lazyMs: 60_000 });
    await store.list(); // opened (that rewrite is no batch)
    await runToEnd(claim, runtime, store, dir, 'slow-create-runner');
    expect((await h.admin.getRun(claim.run.id)).run).toMatchObject({ status: 'completed' });
    expect(store.stats).toMatchObject({ batches: 1, records: 1, syncs: 1 });
    await store.close();
    await runtime.close();
  });
});
