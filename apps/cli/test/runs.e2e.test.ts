import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlaneClient, isApiError } from '@runt/protocol';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { runt } from './cli.js';
import {
  DOCKER_HOST,
  allEvents,
  alive,
  eventually,
  startRunsHarness,
  stdoutOf,
  terminal,
  type RunsHarness,
  type TestAgent,
} from './runs-harness.js';

// Runs end to end: a real listening control plane, real `runt workstation run` processes with
// real agents on the process runtime (and docker), the CLI as a subprocess. The 50-run fleet
// scenario and fencing run on both backends; the scenarios where the backend does not matter
// (cancel, commands, readiness, docker, labels, capacity, freezing an agent) run on PGlite only,
// to keep the suite within a few minutes on a 2-core machine.

describe.each(TEST_BACKENDS)('runs across two agents on %s', (backend) => {
  let h: RunsHarness;
  let a: TestAgent;
  let b: TestAgent;

  beforeAll(async () => {
    h = await startRunsHarness(backend);
    [a, b] = await Promise.all([
      h.startAgent('fleet-a', ['--runtime', 'process', '--max-runs', '4', '--labels', 'pool=a']),
      h.startAgent('fleet-b', ['--runtime', 'process', '--max-runs', '4', '--labels', 'pool=b']),
    ]);
  }, 120_000);
  afterAll(async () => h?.close());

  it('50 runs submitted with the CLI all finish with their output and exit codes, spread over both agents', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) {
      const exit = i % 10 === 3 ? 3 : 0;
      const { run } = await h.admin.submitRun({
        runtime: 'process',
        command: ['/bin/sh', '-c', `echo out-${i}; echo err-${i} >&2; exit ${exit}`],
      });
      ids.push(run.id);
    }
    const runs = await Promise.all(ids.map((id) => terminal(h.admin, id, 120_000)));
    for (const [i, run] of runs.entries()) {
      if (i % 10 === 3)
        expect(run).toMatchObject({ status: 'failed', exit_code: 3, failure_kind: 'nonzero-exit' });
      else expect(run).toMatchObject({ status: 'completed', exit_code: 0, failure_kind: null });
      expect(await stdoutOf(h.admin, run.id)).toBe(`out-${i}\n`);
      const events = await allEvents(h.admin, run.id);
      expect(events.map((e) => e.seq)).toEqual(events.map((_, j) => j + 1));
      expect(
        events
          .filter((e) => e.type === 'log' && e.payload.stream === 'stderr')
          .map((e) => e.payload.data)
          .join(''),
      ).toBe(`err-${i}\n`);
      expect(events.at(-1)).toMatchObject({ type: 'terminal_status' });
    }
    const used = new Set(runs.map((r) => r.workstation_id));
    expect(used).toEqual(new Set([a.workstationId, b.workstationId]));
  });

  it("submit --follow streams the output and exits with the run's exit code", async () => {
    const ok = await runt(
      ['run', 'submit', '--runtime', 'process', '--follow', '--', '/bin/sh', '-c', 'echo followed'],
      h.adminEnv,
    );
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.stdout).toBe('followed');
    const bad = await runt(
      ['run', 'submit', '--runtime', 'process', '--follow', '--', '/bin/sh', '-c', 'echo nope >&2; exit 5'],
      h.adminEnv,
    );
    expect(bad.exitCode).toBe(5);
    expect(bad.stderr).toContain('nope');
    expect(bad.stderr).toMatch(/runt: run run_\S+ failed \(nonzero-exit\): exited with code 5/);
  });

  it('fencing: a holder whose lease was taken over can neither append nor report (409)', async () => {
    // A workstation without an agent: the test plays two runners of it through the HTTP API.
    const c = await h.pair('fencing-c');
    const ws = new ControlPlaneClient({ url: h.cp.url, token: c.token });
    await ws.registerWorkstation({
      display_name: 'fencing-c',
      cpu_count: 1,
      max_runs: 1,
      runtimes: ['fenced-rt'],
      agent_version: 'test',
      listening: true,
    });
    const { run } = await h.admin.submitRun({
      runtime: 'fenced-rt',
      command: ['x'],
      placement: { workstation_id: c.workstationId },
      max_attempts: 3,
    });
    await eventually(
      async () => (await ws.offeredRuns(c.workstationId)).runs.some((r) => r.id === run.id),
      'the offer',
    );
    const first = await ws.claimRun(run.id, { runner_id: 'runner-1', lease_ms: 1_000 });
    await ws.appendEvents(run.id, {
      fencing_token: first.fencing_token,
      events: [{ seq: first.next_event_seq, type: 'log', payload: { stream: 'stdout', data: 'one\n' } }],
    });
    // runner-1 gives the attempt back before starting it (an expired lease would fail the run:
    // at-most-once start); the run is offered again.
    await ws.releaseRun(run.id, { fencing_token: first.fencing_token });
    const second = await eventually(async () => {
      const offered = (await ws.offeredRuns(c.workstationId)).runs.some((r) => r.id === run.id);
      return offered ? ws.claimRun(run.id, { runner_id: 'runner-2', lease_ms: 30_000 }) : undefined;
    }, 'the re-offer after the release');
    expect(second.fencing_token).toBeGreaterThan(first.fencing_token);
    expect(second.run.attempt).toBe(2);

    const stale = { fencing_token: first.fencing_token };
    await expect(
      ws.appendEvents(run.id, {
        ...stale,
        events: [{ seq: second.next_event_seq, type: 'log', payload: { stream: 'stdout', data: 'stale\n' } }],
      }),
    ).rejects.toMatchObject({ status: 409 });
    await expect(
      ws.reportStatus(run.id, { ...stale, status: 'completed', exit_code: 0 }),
    ).rejects.toMatchObject({ status: 409 });
    await expect(ws.heartbeatRun(run.id, { ...stale, lease_ms: 5_000 })).rejects.toSatisfy(
      (e) => isApiError(e) && e.status === 409,
    );

    await ws.appendEvents(run.id, {
      fencing_token: second.fencing_token,
      events: [{ seq: second.next_event_seq, type: 'log', payload: { stream: 'stdout', data: 'two\n' } }],
    });
    await ws.reportStatus(run.id, { fencing_token: second.fencing_token, status: 'completed', exit_code: 0 });
    expect((await h.admin.getRun(run.id)).run).toMatchObject({ status: 'completed', attempt: 2 });
    expect(await stdoutOf(h.admin, run.id)).toBe('one\ntwo\n');
  });
});

describe('runs on one agent fleet (pglite; the backend does not matter here)', () => {
  let h: RunsHarness;
  let a: TestAgent;
  let b: TestAgent;
  const gate = (name: string) => join(h.root, name);

  beforeAll(async () => {
    h = await startRunsHarness('pglite');
    [a, b] = await Promise.all([
      h.startAgent('solo-a', [
        '--runtime',
        'process',
        '--runtime',
        'docker',
        '--max-runs',
        '3',
        '--labels',
        'pool=a,shared=yes',
        '--lease-ms',
        '3000',
        '--stop-timeout-ms',
        '2000',
      ]),
      h.startAgent('solo-b', [
        '--runtime',
        'process',
        '--max-runs',
        '3',
        '--labels',
        'pool=b,shared=yes',
        '--lease-ms',
        '3000',
        '--stop-timeout-ms',
        '2000',
      ]),
    ]);
  }, 120_000);
  afterAll(async () => h?.close());

  it("the workstation token is in neither agent's command line", () => {
    for (const agent of [a, b]) {
      const cmdline = readCmdline(agent.agentPid);
      expect(cmdline).toContain('agent/dist/bin.js');
      expect(cmdline).not.toContain(agent.token);
      expect(cmdline).not.toContain('rnt_ws_');
    }
  });

  it('ready_when: running is reported when the line appears, not at start', async () => {
    const go = gate('ready-go');
    const { run } = await h.admin.submitRun({
      runtime: 'process',
      command: [
        '/bin/sh',
        '-c',
        `echo booting; while [ ! -f ${go} ]; do sleep 0.05; done; echo READY now; while [ ! -f ${go}2 ]; do sleep 0.05; done; echo bye`,
      ],
      ready_when: { log_line: 'READY' },
    });
    await eventually(async () => (await stdoutOf(h.admin, run.id)).includes('booting'), 'the first output');
    expect((await h.admin.getRun(run.id)).run.status).toBe('accepted');
    writeFileSync(go, '');
    const running = await eventually(
      async () =>
        (await h.admin.getRun(run.id)).run.status === 'running'
          ? (await h.admin.getRun(run.id)).run
          : undefined,
      'running',
    );
    expect(running.started_at).not.toBeNull();
    writeFileSync(`${go}2`, '');
    expect(await terminal(h.admin, run.id)).toMatchObject({ status: 'completed', exit_code: 0 });
    expect(await stdoutOf(h.admin, run.id)).toBe('booting\nREADY now\nbye\n');
  });

  it('cancel stops a long run: reported cancelled and its process is gone', async () => {
    const { run } = await h.admin.submitRun({
      runtime: 'process',
      command: ['/bin/sh', '-c', 'echo pid=$$; exec sleep 300'],
    });
    const out = await eventually(async () => {
      const s = await stdoutOf(h.admin, run.id);
      return /pid=\d+/.test(s) ? s : undefined;
    }, 'the pid line');
    const pid = Number(/pid=(\d+)/.exec(out)![1]);
    expect(alive(pid)).toBe(true);
    const r = await runt(['run', 'cancel', run.id], h.adminEnv);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await terminal(h.admin, run.id)).toMatchObject({ status: 'cancelled', failure_kind: 'cancelled' });
    await eventually(async () => !alive(pid), `process ${pid} to be gone`);
  });

  it('commands reach a live run and their output lands in its events', async () => {
    const { run } = await h.admin.submitRun({
      runtime: 'process',
      command: ['/bin/sh', '-c', 'echo up; exec sleep 300'],
      ready_when: { log_line: 'up' },
    });
    await eventually(async () => (await h.admin.getRun(run.id)).run.status === 'running', 'running');
    const q = await runt(
      ['run', 'exec', '--detach', run.id, '--', '/bin/sh', '-c', 'echo from-exec; exit 4'],
      h.adminEnv,
    );
    expect(q.exitCode, q.stderr).toBe(0);
    const commandId = q.stdout.trim();
    const events = await eventually(async () => {
      const ev = await allEvents(h.admin, run.id);
      return ev.some(
        (e) =>
          e.type === 'command_status' && e.payload.command_id === commandId && e.payload.state === 'failed',
      )
        ? ev
        : undefined;
    }, 'the command to finish');
    expect(
      events
        .filter((e) => e.type === 'log' && e.payload.command_id === commandId)
        .map((e) => e.payload.data)
        .join(''),
    ).toBe('from-exec\n');
    expect(
      events.find((e) => e.type === 'command_status' && e.payload.state === 'failed')?.payload,
    ).toMatchObject({ command_id: commandId, exit_code: 4 });
    await runt(['run', 'cancel', run.id], h.adminEnv);
    expect((await terminal(h.admin, run.id)).status).toBe('cancelled');
  });

  it('placement by labels: runs go to the workstation whose labels match', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 4; i++)
      ids.push(
        (
          await h.admin.submitRun({
            runtime: 'process',
            command: ['/bin/true'],
            placement: { labels: { pool: i % 2 ? 'a' : 'b' } },
          })
        ).run.id,
      );
    const runs = await Promise.all(ids.map((id) => terminal(h.admin, id)));
    expect(runs.map((r) => r.workstation_id)).toEqual([
      b.workstationId,
      a.workstationId,
      b.workstationId,
      a.workstationId,
    ]);
    expect(runs.every((r) => r.status === 'completed')).toBe(true);
  });

  it('a docker run executes on the real engine', async () => {
    if (!DOCKER_HOST && process.env.CI !== 'true')
      throw new Error('no docker engine: run scripts/setup-engines.sh or set DOCKER_HOST');
    const { run } = await h.admin.submitRun({
      runtime: 'docker',
      image: 'runt-test/busybox:latest',
      command: ['sh', '-c', 'echo in-docker; exit 2'],
    });
    expect(await terminal(h.admin, run.id, 120_000)).toMatchObject({
      status: 'failed',
      exit_code: 2,
      failure_kind: 'nonzero-exit',
      workstation_id: a.workstationId,
    });
    expect(await stdoutOf(h.admin, run.id)).toBe('in-docker\n');
  });

  it('without capacity runs wait, then run when capacity frees', async () => {
    const go = gate('capacity-go');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push(
        (
          await h.admin.submitRun({
            runtime: 'process',
            command: ['/bin/sh', '-c', `while [ ! -f ${go} ]; do sleep 0.05; done; echo done-${i}`],
            placement: { labels: { pool: 'b' } },
          })
        ).run.id,
      );
    }
    // solo-b takes three (its --max-runs); two wait.
    await eventually(async () => {
      const runs = await Promise.all(ids.map(async (id) => (await h.admin.getRun(id)).run));
      const held = runs.filter((r) => r.status === 'accepted' || r.status === 'running').length;
      const waiting = runs.filter((r) => r.status === 'queued' || r.status === 'offered').length;
      return held === 3 && waiting === 2;
    }, 'three held and two waiting');
    writeFileSync(go, '');
    const runs = await Promise.all(ids.map((id) => terminal(h.admin, id)));
    expect(runs.every((r) => r.status === 'completed' && r.workstation_id === b.workstationId)).toBe(true);
    for (const [i, r] of runs.entries()) expect(await stdoutOf(h.admin, r.id)).toBe(`done-${i}\n`);
  });

  it('an agent frozen past its lease while its started run is still accepted: runner-lost, never started twice', async () => {
    const go = gate('freeze-go');
    const { run } = await h.admin.submitRun({
      runtime: 'process',
      command: [
        '/bin/sh',
        '-c',
        `echo start-$RUNT_MARK; while [ ! -f ${go} ]; do sleep 0.05; done; echo READY; echo finished`,
      ],
      env: { RUNT_MARK: 'm' },
      ready_when: { log_line: 'READY' },
      placement: { labels: { shared: 'yes' } },
      max_attempts: 3,
    });
    // The workload has started, but is not ready: the run is still `accepted`.
    const held = await eventually(async () => {
      const r = (await h.admin.getRun(run.id)).run;
      const started = (await allEvents(h.admin, run.id)).some(
        (e) => e.type === 'log' && String(e.payload.data).includes('start-m'),
      );
      return r.status === 'accepted' && r.workstation_id && started ? r : undefined;
    }, 'the run accepted and its workload started');
    const frozen = held.workstation_id === a.workstationId ? a : b;
    process.kill(frozen.agentPid, 'SIGSTOP');
    try {
      // Issue 8, defect 4: the expired lease used to re-queue the run and the other agent started it again.
      const lost = await terminal(h.admin, run.id);
      expect(lost).toMatchObject({
        status: 'failed',
        failure_kind: 'runner-lost',
        attempt: 1,
        workstation_id: frozen.workstationId,
      });
    } finally {
      process.kill(frozen.agentPid, 'SIGCONT');
    }
    // The thawed agent learns its lease is gone, stops the workload and reports nothing.
    await eventually(
      async () => !(frozen.output().match(/dropping the run/) === null),
      'the frozen agent to drop the run',
    );
    writeFileSync(go, '');
    const events = await allEvents(h.admin, run.id);
    expect(events.filter((e) => e.type === 'terminal_status')).toHaveLength(1);
    expect(events.filter((e) => e.type === 'log' && String(e.payload.data).includes('start-m'))).toHaveLength(
      1,
    );
    expect(events.some((e) => e.type === 'log' && String(e.payload.data).includes('finished'))).toBe(false);
    expect((await h.admin.getRun(run.id)).run).toMatchObject({ status: 'failed', attempt: 1 });
  });

  it('SIGTERM to runt workstation run stops the agent cleanly and it stops listening', async () => {
    a.cli.kill('SIGTERM');
    const r = await a.cli;
    expect(r.exitCode).toBe(0);
    expect(alive(a.agentPid)).toBe(false);
    const w = (await h.admin.listWorkstations()).workstations.find((x) => x.id === a.workstationId);
    expect(w?.listening).toBe(false);
    expect(existsSync(join(a.configDir, 'workstation.json'))).toBe(true);
  });
});

function readCmdline(pid: number): string {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
}
