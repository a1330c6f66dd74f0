import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ClaimRunResponse } from '@runt/protocol';
import { createFakeRuntime } from '@runt/runtime-spi/fake';
import { readoptRuns, type ConfirmedLease } from '../src/readopt-runs.js';
import { releaseOrphans } from '../src/release-orphans.js';
import { RUN_ID_LABEL, WORKSTATION_LABEL } from '../src/run-prepare.js';
import { RunStateStore, type RunState } from '../src/run-state-store.js';
import {
  eventually,
  journaledState,
  pairWorkstation,
  restartableControlPlane,
  testLogger,
} from './control-plane.js';

// Chaos (issue 8, PGlite c200 and c800; Postgres c614): an agent killed -9 came back, registered,
// and then the control plane was killed and restarted. Its re-adoption heartbeat failed to
// connect and was taken for "not ours": a healthy workload (it ran and ended) was stopped and
// the run failed `runner-lost` when its lease ran out. Its hand-back of a never-started run
// its predecessor held failed the same way ("cannot list the runs …"), and that run failed
// `runner-lost` too. No answer is not a refusal: both ask again until the control plane answers.
describe('a restarted agent whose control plane is down when it first asks', () => {
  const root = mkdtempSync(join(tmpdir(), 'runt-readopt-outage-'));
  const cp = restartableControlPlane(join(root, 'cp'));
  afterAll(() => cp.stop());

  it('resumes the journaled live workload and releases the never-started run once the control plane is back', async () => {
    await cp.start();
    const { admin, workstationId, ws } = await pairWorkstation(cp.url, cp.adminToken, 'readopt-outage');
    await ws.registerWorkstation({
      display_name: 'readopt-outage',
      cpu_count: 2,
      runtimes: ['fake'],
      agent_version: '0.0.0-test',
      listening: true,
      max_runs: 10,
    });
    // The agent before this one on the state dir (killed -9) held both runs.
    const dead = `${workstationId}/dead0004`;
    const claim = async (): Promise<ClaimRunResponse> => {
      const { run } = await admin.submitRun({ runtime: 'fake', command: ['/bin/sh', '-c', 'exit 0'] });
      await eventually(async () => (await admin.getRun(run.id)).run.status === 'offered', 'offered');
      return ws.claimRun(run.id, { runner_id: dead, lease_ms: 30_000 });
    };
    const live = await claim();
    const orphan = await claim(); // claimed on offer for the dead agent, never in its journal

    const runtime = createFakeRuntime();
    const inst = await runtime.create({
      name: `runt-${live.run.id}-1`,
      command: ['/bin/sh', '-c', 'sleep 60'],
      labels: { [RUN_ID_LABEL]: live.run.id, [WORKSTATION_LABEL]: workstationId },
    });
    await runtime.start(inst.id);
    const dir = join(root, 'agent');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const store = new RunStateStore(join(dir, 'journal'));
    const state = journaledState(live, dead, { ready: true, instance_id: inst.id });
    await store.save(state);

    // The control plane goes down (killed) and is back 4 s later on the same data and port.
    await cp.stop();
    const back = new Promise((r) => setTimeout(r, 4_000)).then(() => cp.start());
    const log = testLogger();
    const adopted: Array<{ state: RunState; confirmed: ConfirmedLease }> = [];
    const backoff = { baseMs: 200, capMs: 1_000 };
    const [released] = await Promise.all([
      releaseOrphans({
        client: ws,
        workstationId,
        predecessors: [dead],
        journaled: new Set([live.run.id]),
        boundMs: 30_000,
        backoff,
        logger: log.logger,
      }),
      readoptRuns({
        client: ws,
        runtimes: new Map([['fake', runtime]]),
        store,
        workstationId,
        leaseMs: 30_000,
        stopTimeoutMs: 1_000,
        answerBoundMs: 30_000,
        backoff,
        adopt: (_name, s, confirmed) => adopted.push({ state: s, confirmed }),
        logger: log.logger,
      }),
      back,
    ]);
    try {
      expect(log.lines.filter((l) => l.msg === 'stopping an instance whose run is no longer ours')).toEqual(
        [],
      );
      expect(adopted.map((a) => a.state.run_id)).toEqual([live.run.id]);
      expect(Date.parse(adopted[0]!.confirmed.expiresAt)).toBeGreaterThan(Date.now());
      expect((await runtime.inspect(inst.id))?.state).toBe('running');
      expect((await store.list()).map((s) => s.run_id)).toEqual([live.run.id]);
      expect(released).toEqual([orphan.run.id]);
      const again = (await admin.getRun(orphan.run.id)).run;
      expect(again).toMatchObject({ attempt: 2, failure_kind: null });
      expect(['queued', 'offered']).toContain(again.status);
    } finally {
      await runtime.stop(inst.id, { timeoutMs: 1_000 }).catch(() => undefined);
      await runtime.close();
      await store.close();
    }
  }, 90_000);
});
