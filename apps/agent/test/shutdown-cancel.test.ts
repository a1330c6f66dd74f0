import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RuntimeRegistry, type Runtime } from '@runt/runtime-spi';
import { FakeEngine, createFakeRuntime } from '@runt/runtime-spi/fake';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RUN_ID_LABEL, WORKSTATION_LABEL } from '../src/run-prepare.js';
import { RunStateStore } from '../src/run-state-store.js';
import { eventually, startTestControlPlane, testAgent, type TestControlPlane } from './control-plane.js';

let h: TestControlPlane;
beforeAll(async () => {
  h = await startTestControlPlane();
});
afterAll(async () => {
  await h?.close();
});

const statusOf = async (id: string) => (await h.admin.getRun(id)).run;

describe('a run the agent stops on shutdown ends cancelled, whatever its exit code (issue 8)', () => {
  it('saves the stop before the polite signal, so the stop is what gets reported', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'runt-shutdown-cancel-'));
    const journalAtStop: string[] = [];
    const registry = new RuntimeRegistry().register('fake', () => {
      const rt = createFakeRuntime();
      const stop = rt.stop.bind(rt);
      return Object.assign(rt, {
        stop: ((id, opts) => {
          journalAtStop.push(readFileSync(join(dir, 'agent', 'journal'), 'utf8'));
          return stop(id, opts);
        }) satisfies Runtime['stop'],
      });
    });
    const agent = testAgent({
      url: h.url,
      token: h.token,
      maxRuns: 1,
      stateDir: dir,
      registry,
    });
    const running = agent.run();
    const { run } = await h.admin.submitRun({ runtime: 'fake', command: ['sleep', '30'] });
    await eventually(async () => (await statusOf(run.id)).status === 'running', 'the run is running', 30_000);
    await agent.shutdown({ graceMs: 0 });
    await running;
    const end = await statusOf(run.id);
    expect(end.status).toBe('cancelled');
    expect(journalAtStop[0]).toContain(
      '"stopping":{"timeout":false,"message":"the agent shut down before the run finished"}',
    );
  });

  it('a restarted agent reports a stop its predecessor began as cancelled, not as the exit code the signal gave', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'runt-shutdown-cancel-'));
    const engine = new FakeEngine();
    // What an agent killed -9 right after its polite signal leaves: the stop saved, the workload
    // ended by SIGTERM, no report.
    const claim = await h.claimRun({ runtime: 'fake', command: ['sleep', '30'] }, 'dead-runner');
    const rt = createFakeRuntime({ engine });
    const inst = await rt.create({
      name: 'stopped',
      command: ['/bin/sh', '-c', 'sleep 30'],
      sourcePath: '/tmp',
      labels: { [RUN_ID_LABEL]: claim.run.id, [WORKSTATION_LABEL]: h.workstationId },
    });
    await rt.start(inst.id);
    await rt.stop(inst.id, { timeoutMs: 5_000 });
    expect((await rt.wait(inst.id))?.exitCode).not.toBe(0);
    const store = new RunStateStore(join(dir, 'agent', 'journal'));
    await store.save({
      run_id: claim.run.id,
      runtime: 'fake',
      runner_id: 'dead-runner',
      fencing_token: claim.fencing_token,
      next_seq: claim.next_event_seq,
      log_chars: { stdout: 0, stderr: 0 },
      ready: true,
      command_seq: 0,
      instance_id: inst.id,
      stopping: { timeout: false, message: 'the agent shut down before the run finished' },
    });
    await store.close();
    const agent = testAgent({
      url: h.url,
      token: h.token,
      maxRuns: 1,
      stateDir: dir,
      registry: new RuntimeRegistry().register('fake', () => createFakeRuntime({ engine })),
    });
    const running = agent.run();
    const end = await eventually(
      async () => {
        const r = await statusOf(claim.run.id);
        return r.status !== 'accepted' && r.status !== 'running' ? r : undefined;
      },
      'the run is finished',
      30_000,
    );
    await agent.shutdown({ graceMs: 0 });
    await running;
    expect(end.status).toBe('cancelled');
    expect(end.failure_message).toBe('the agent shut down before the run finished');
  });
});
