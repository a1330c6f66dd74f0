import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LeaseClient } from '@runt/leases';
import { RuntimeRegistry, type Runtime } from '@runt/runtime-spi';
import { createFakeRuntime } from '@runt/runtime-spi/fake';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readoptRuns } from '../src/readopt-runs.js';
import { RunExecution } from '../src/run-execution.js';
import { RUN_ID_LABEL, WORKSTATION_LABEL } from '../src/run-prepare.js';
import { RunStateStore } from '../src/run-state-store.js';
import {
  agentStateDir,
  eventually,
  journaledState,
  startTestControlPlane,
  testLogger,
  testAgent,
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
 * What an agent killed -9 between create and start leaves: a run claimed for its runner (`dead`)
 * and a fake-runtime instance of it, created and never started, in a fresh state dir.
 */
async function neverStartedInstance(runner: string) {
  const dir = agentStateDir('runt-never-started-');
  const dead = `${h.workstationId}/${runner}`;
  const claim = await h.claimRun({ runtime: 'fake', command: ['/bin/sh', '-c', 'exit 0'] }, dead);
  const runtime = createFakeRuntime();
  const first = await runtime.create({
    name: `runt-${claim.run.id}-1`,
    command: ['/bin/sh', '-c', 'exit 0'],
    labels: { [RUN_ID_LABEL]: claim.run.id, [WORKSTATION_LABEL]: h.workstationId },
  });
  return { dir, dead, claim, runtime, first };
}

// Chaos (issue 8): an agent killed -9 between creating a run's instance and starting it left the
// next agent a journaled instance still `created`; re-adopted, its wait ended `not-started`
// after the adapter's start grace, and the run was failed `internal` — 5 of 1,000 runs — though
// its workload never ran and it had attempts left. It goes back to the queue instead.
describe('a re-adopted instance that was never started', () => {
  it('is handed back and runs again, never failed internal; its first instance never starts', async () => {
    const { dir, dead, claim, runtime, first } = await neverStartedInstance('dead0002');
    const store = new RunStateStore(join(dir, 'agent', 'journal'));
    await store.save(journaledState(claim, dead, { instance_id: first.id }));
    await store.close();

    const started: string[] = [];
    const start = runtime.start.bind(runtime);
    const registry = new RuntimeRegistry().register('fake', () =>
      Object.assign(runtime, {
        start: ((id, opts) => {
          started.push(id);
          return start(id, opts);
        }) satisfies Runtime['start'],
      }),
    );
    const log = testLogger();
    const agent = testAgent({
      url: h.url,
      token: h.token,
      maxRuns: 2,
      stateDir: dir,
      registry,
      logger: log.logger,
    });
    const running = agent.run();
    try {
      // The start grace (10 s), then the hand-back, then a new attempt placed and run here.
      const end = await eventually(
        async () => {
          const r = (await h.admin.getRun(claim.run.id)).run;
          return r.status === 'completed' || r.status === 'failed' ? r : undefined;
        },
        'the run to end',
        45_000,
      );
      // (handed back over the link, a never-started attempt is withdrawn like a declined offer: it
      // keeps its number; over HTTP a release counts a new one — either way it runs once)
      expect(end).toMatchObject({ status: 'completed', exit_code: 0, failure_kind: null });
      expect(started).toHaveLength(1);
      expect(started).not.toContain(first.id);
      expect(
        log.lines.some(
          (l) =>
            l.run_id === claim.run.id &&
            l.msg === 're-adopted run was never started; handing it back to the queue',
        ),
      ).toBe(true);
    } finally {
      await agent.shutdown({ graceMs: 0 });
      await running;
    }
  }, 90_000);

  // The agent that hands such a run back removes its instance, then forgets it in the journal.
  // Killed -9 in between, with its hand-back not applied (the `result` went with it), it left
  // the next agent a journaled instance id whose instance is gone and a lease still its own:
  // that run was failed `internal` ("the workload disappeared while the agent was down"),
  // though its workload never ran — the chaos runs' unexplained `failed/internal` shape.
  it('stays re-queueable when the agent that hands it back dies before the hand-back is applied', async () => {
    const { dir, dead, claim, runtime, first } = await neverStartedInstance('dead0005');
    const file = join(dir, 'agent', 'journal');
    // The journal of an agent killed -9 right after removing the instance: its last records
    // are durable, the removal of this run never is.
    class KilledBeforeForgetting extends RunStateStore {
      override async remove(runId: string): Promise<void> {
        if (runId !== claim.run.id) await super.remove(runId);
      }
    }
    const store = new KilledBeforeForgetting(file);
    const state = journaledState(claim, dead, { instance_id: first.id });
    await store.save(state);
    const handedBack: string[] = [];
    const exec = RunExecution.adopt(
      {
        client: h.ws,
        leases: new LeaseClient({ baseUrl: h.url, token: h.token }),
        runtime,
        store,
        workRoot: join(dir, 'agent', 'work'),
        workstationId: h.workstationId,
        runnerId: dead,
        leaseMs: 30_000,
        stopTimeoutMs: 1_000,
        commandPollMs: () => 60_000,
        // the `result` that would hand it back went down with the agent
        handBack: async (runId) => void handedBack.push(runId),
        logger: testLogger().logger,
      },
      state,
      { sentAt: performance.now(), expiresAt: new Date(Date.now() + 30_000).toISOString() },
    );
    await exec.done; // the start grace (10 s), the hand-back, the instance removed
    expect(handedBack).toEqual([claim.run.id]);
    expect(await runtime.inspect(first.id)).toBeUndefined();
    await store.close();

    // The next agent on this state dir.
    const next = new RunStateStore(file);
    const log = testLogger();
    await readoptRuns({
      client: h.ws,
      runtimes: new Map([['fake', runtime]]),
      store: next,
      workstationId: h.workstationId,
      leaseMs: 30_000,
      stopTimeoutMs: 1_000,
      adopt: () => expect.unreachable('nothing to adopt'),
      logger: log.logger,
    });
    const run = (await h.admin.getRun(claim.run.id)).run;
    expect(run).toMatchObject({ attempt: 2, failure_kind: null });
    expect(['queued', 'offered']).toContain(run.status);
    expect(await next.list()).toEqual([]);
    await next.close();
    await runtime.close();
  }, 60_000);
});
