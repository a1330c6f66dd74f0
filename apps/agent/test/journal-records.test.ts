import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LeaseClient } from '@runt/leases';
import type { ControlPlaneClient } from '@runt/protocol';
import { createFakeRuntime } from '@runt/runtime-spi/fake';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunExecution } from '../src/run-execution.js';
import { RunStateStore, type RunState } from '../src/run-state-store.js';
import { StartGate } from '../src/start-gate.js';
import { startTestControlPlane, testLogger, type TestControlPlane } from './control-plane.js';

let h: TestControlPlane;
let dir: string;
beforeAll(async () => {
  h = await startTestControlPlane();
  dir = mkdtempSync(join(tmpdir(), 'runt-journal-records-'));
}, 120_000);
afterAll(async () => {
  await h?.close();
  rmSync(dir, { recursive: true, force: true });
});

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

/** The workstation's client, adding to `ended` each run whose terminal report it sends. */
function notingEnds(ended: Set<string>): ControlPlaneClient {
  const reportStatusBrief: ControlPlaneClient['reportStatusBrief'] = (runId, body) => {
    if (TERMINAL.has(body.status)) ended.add(runId);
    return h.ws.reportStatusBrief(runId, body);
  };
  return new Proxy(h.ws, {
    get: (target, key) =>
      key === 'reportStatusBrief' ? reportStatusBrief : (Reflect.get(target, key) as unknown),
  });
}

/** A run execution's dependencies for these tests (`runnerId`'s runs, work under `work`), with the rest of `o` on top. */
function execDeps(
  o: Pick<Parameters<typeof RunExecution.accept>[0], 'client' | 'store' | 'runtime' | 'runnerId'> & {
    work: string;
  } & Partial<Parameters<typeof RunExecution.accept>[0]>,
): Parameters<typeof RunExecution.accept>[0] {
  const { client, store, runtime, runnerId, work, ...over } = o;
  return {
    client,
    leases: new LeaseClient({ baseUrl: h.url, token: h.token }),
    runtime,
    store,
    workRoot: join(dir, work),
    workstationId: h.workstationId,
    runnerId,
    leaseMs: 30_000,
    stopTimeoutMs: 1_000,
    commandPollMs: () => 60_000,
    takesStartWithEnd: () => true,
    logger: testLogger().logger,
    ...over,
  };
}

describe('the journal records of a run (issue 9, agent profile)', () => {
  it('queues no record for the output position its terminal report carried; the run is still forgotten', async () => {
    /** The terminal report has been sent for these runs: a note or save after it is a record the run did not need. */
    const ended = new Set<string>();
    const late: string[] = [];
    class Counting extends RunStateStore {
      override async note(state: RunState): Promise<void> {
        if (ended.has(state.run_id)) late.push(`note ${state.run_id} next_seq ${state.next_seq}`);
        return super.note(state);
      }
      override async save(state: RunState): Promise<void> {
        if (ended.has(state.run_id)) late.push(`save ${state.run_id}`);
        return super.save(state);
      }
    }
    const store = new Counting(join(dir, 'journal'));
    const client = notingEnds(ended);
    const runtime = createFakeRuntime({ recordCalls: false });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const claim = await h.claimRun({ runtime: 'fake', command: ['/bin/sh', '-c', 'echo hi'] }, 'records');
      ids.push(claim.run.id);
      const exec = await RunExecution.accept(
        execDeps({ client, store, runnerId: 'records', work: 'work', runtime }),
        claim,
      );
      await exec!.done;
    }
    expect(ended.size).toBe(5);
    expect(late).toEqual([]);
    for (const id of ids) {
      expect((await h.admin.getRun(id)).run.status).toBe('completed');
      const { events } = await h.admin.listEvents(id, { after_seq: 0 });
      expect(events.filter((e) => e.type === 'log').map((e) => e.payload.data)).toEqual(['hi\n']);
    }
    expect(await store.list()).toEqual([]);
    await store.close();
  }, 60_000);

  it('notes no start time for a run that waited for a slot without a timeout; one with a timeout still notes it', async () => {
    /** Records of each run after the synced save of its instance id, until its terminal report. */
    const after = new Map<string, RunState[]>();
    const ended = new Set<string>();
    class Counting extends RunStateStore {
      override async note(state: RunState): Promise<void> {
        if (!ended.has(state.run_id)) after.get(state.run_id)?.push(state);
        return super.note(state);
      }
      override async save(state: RunState): Promise<void> {
        if (state.instance_id !== undefined && !after.has(state.run_id)) after.set(state.run_id, []);
        else if (!ended.has(state.run_id)) after.get(state.run_id)?.push(state);
        return super.save(state);
      }
    }
    const store = new Counting(join(dir, 'journal-gate'));
    const client = notingEnds(ended);
    const runtime = createFakeRuntime({ recordCalls: false });
    // one slot: the first run holds it 0.3 s, the others are created, journaled and wait for it
    const gate = new StartGate(1);
    const claims = [
      await h.claimRun({ runtime: 'fake', command: ['/bin/sh', '-c', 'sleep 0.3'] }, 'gate-records'),
      await h.claimRun({ runtime: 'fake', command: ['/bin/sh', '-c', 'exit 0'] }, 'gate-records'),
      await h.claimRun({ runtime: 'fake', command: ['/bin/sh', '-c', 'exit 0'] }, 'gate-records'),
      await h.claimRun(
        { runtime: 'fake', command: ['/bin/sh', '-c', 'exit 0'], timeout_s: 30 },
        'gate-records',
      ),
    ];
    const execs = await Promise.all(
      claims.map((claim) =>
        RunExecution.accept(
          execDeps({ client, store, runnerId: 'gate-records', work: 'work-gate', runtime, startGate: gate }),
          claim,
        ),
      ),
    );
    await Promise.all(execs.map((e) => e!.done));
    const [first, plain1, plain2, timed] = claims.map((c) => c.run.id);
    for (const id of [first!, plain1!, plain2!, timed!])
      expect((await h.admin.getRun(id)).run.status).toBe('completed');
    // each waited (the gate's one permit was held by the first), and none is noted again for it
    expect(after.get(plain1!)).toEqual([]);
    expect(after.get(plain2!)).toEqual([]);
    // the timed run's timeout counts from its start: its later start time is noted for a restart
    const timedNotes = after.get(timed!)!;
    expect(timedNotes).toHaveLength(1);
    expect(timedNotes[0]!.timeout_s).toBe(30);
    expect(await store.list()).toEqual([]);
    await store.close();
  }, 60_000);
});
