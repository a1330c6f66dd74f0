import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RuntimeRegistry, type Runtime } from '@runt/runtime-spi';
import { createFakeRuntime } from '@runt/runtime-spi/fake';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordRunner } from '../src/runner-history.js';
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

const runOf = async (id: string) => (await h.admin.getRun(id)).run;

/** The fake runtime, counting the workloads started per run. */
function countingRegistry() {
  const starts = new Map<string, number>();
  const registry = new RuntimeRegistry().register('fake', () => {
    const rt = createFakeRuntime();
    const create = rt.create.bind(rt);
    const start = rt.start.bind(rt);
    const ids = new Map<string, string>();
    return Object.assign(rt, {
      create: (async (spec, opts) => {
        const inst = await create(spec, opts);
        ids.set(inst.id, spec.labels?.['runt.run-id'] ?? '');
        return inst;
      }) satisfies Runtime['create'],
      start: (async (id, opts) => {
        const runId = ids.get(id) ?? '';
        starts.set(runId, (starts.get(runId) ?? 0) + 1);
        return start(id, opts);
      }) satisfies Runtime['start'],
    });
  });
  return { registry, starts };
}

describe('a restarted agent hands back the runs its dead predecessor held but never started (issue 8, chaos)', () => {
  it('releases (re-queues) an accepted run leased to a previous runner of this state dir that its journal never held; leaves other runners’ runs alone', async () => {
    const dir = agentStateDir('runt-orphans-');
    // The agent before this one on this state dir: its runner id recorded, then killed -9 with a
    // run claimed for it on offer that it never took (not in its journal).
    const dead = `${h.workstationId}/dead0001`;
    await recordRunner(join(dir, 'agent', 'runners'), dead);
    const orphan = await h.claimRun({ runtime: 'fake', command: ['/bin/sh', '-c', 'exit 0'] }, dead);
    // A run leased to a runner this state dir never had (another agent with this credential).
    const foreign = await h.claimRun({ runtime: 'fake', command: ['/bin/sh', '-c', 'exit 0'] }, 'elsewhere');
    // A run the predecessor's journal did hold: re-adoption's, not this hand-back's.
    const journaled = await h.claimRun({ runtime: 'fake', command: ['/bin/sh', '-c', 'exit 0'] }, dead);
    const store = new RunStateStore(join(dir, 'agent', 'journal'));
    // Not its lease's token: re-adoption leaves it alone.
    await store.save(journaledState(journaled, dead, { fencing_token: journaled.fencing_token + 7 }));
    await store.close();

    const { registry, starts } = countingRegistry();
    const log = testLogger();
    const agent = testAgent({
      url: h.url,
      token: h.token,
      maxRuns: 4,
      stateDir: dir,
      registry,
      logger: log.logger,
    });
    const running = agent.run();
    try {
      // Well within the orphan's 30 s lease: it was re-queued, placed again and run here.
      const end = await eventually(
        async () => {
          const r = await runOf(orphan.run.id);
          return r.status === 'completed' ? r : undefined;
        },
        'the orphaned run to complete',
        20_000,
      );
      expect(end).toMatchObject({ status: 'completed', exit_code: 0, attempt: 2 });
      expect(starts.get(orphan.run.id)).toBe(1);
      expect(
        log.lines.some(
          (l) =>
            l.run_id === orphan.run.id &&
            l.msg === 'released a run held by this state dir’s previous agent that it never started',
        ),
      ).toBe(true);
      expect(await runOf(foreign.run.id)).toMatchObject({ status: 'accepted', attempt: 1 });
      expect((await runOf(journaled.run.id)).lease?.holder).toBe(`${h.workstationId}/${dead}`);
      expect(starts.has(foreign.run.id) || starts.has(journaled.run.id)).toBe(false);
      // This agent's own runner is in the history now, for the next one.
      const history = readFileSync(join(dir, 'agent', 'runners'), 'utf8')
        .trim()
        .split('\n');
      expect(history).toHaveLength(2);
      expect(history[0]).toBe(dead);
    } finally {
      await agent.shutdown({ graceMs: 0 });
      await running;
    }
  }, 60_000);
});
