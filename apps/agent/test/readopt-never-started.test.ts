import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RuntimeRegistry, type Runtime } from '@runt/runtime-spi';
import { createFakeRuntime } from '@runt/runtime-spi/fake';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RUN_ID_LABEL, WORKSTATION_LABEL } from '../src/run-prepare.js';
import { RunStateStore } from '../src/run-state-store.js';
import {
  eventually,
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

// Chaos (issue 8): an agent killed -9 between creating a run's instance and starting it left the
// next agent a journaled instance still `created`; re-adopted, its wait ended `not-started`
// after the adapter's start grace, and the run was failed `internal` — 5 of 1,000 runs — though
// its workload never ran and it had attempts left. It goes back to the queue instead.
describe('a re-adopted instance that was never started', () => {
  it('is handed back and runs again, never failed internal; its first instance never starts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'runt-never-started-'));
    mkdirSync(join(dir, 'agent'), { recursive: true, mode: 0o700 });
    const dead = `${h.workstationId}/dead0002`;
    const claim = await h.claimRun({ runtime: 'fake', command: ['/bin/sh', '-c', 'exit 0'] }, dead);
    const runtime = createFakeRuntime();
    const first = await runtime.create({
      name: `runt-${claim.run.id}-1`,
      command: ['/bin/sh', '-c', 'exit 0'],
      labels: { [RUN_ID_LABEL]: claim.run.id, [WORKSTATION_LABEL]: h.workstationId },
    });
    const store = new RunStateStore(join(dir, 'agent', 'journal'));
    await store.save({
      run_id: claim.run.id,
      runtime: 'fake',
      runner_id: dead,
      fencing_token: claim.fencing_token,
      next_seq: claim.next_event_seq,
      log_chars: { stdout: 0, stderr: 0 },
      ready: false,
      command_seq: 0,
      instance_id: first.id,
    });
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
});
