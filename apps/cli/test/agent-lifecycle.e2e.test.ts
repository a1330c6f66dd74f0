import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runt } from './cli.js';
import { launchAgent, statusOf, type Paired } from './agent-lifecycle-harness.js';
import {
  allEvents,
  alive,
  eventually,
  startRunsHarness,
  stdoutOf,
  terminal,
  type RunsHarness,
  type TestAgent,
} from './runs-harness.js';

// The agent's lifecycle end to end: a real listening control plane (PGlite: the backend does
// not matter here), real `runt workstation run` processes on the process runtime, the CLI as a
// subprocess. Every run is pinned to the workstation the test is about, so the agents of the
// different tests never take each other's runs.

/**
 * The live run states of an agent's journal, read without opening it as a store (opening
 * rewrites it; only its agent may): each line is a record's JSON, a space, its CRC-32.
 */
function journalStates(file: string): Map<string, { log_chars: { stdout: number } }> {
  const live = new Map<string, { log_chars: { stdout: number } }>();
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  for (const line of text.split('\n')) {
    try {
      const rec = JSON.parse(line.slice(0, line.lastIndexOf(' '))) as {
        put?: { run_id: string; log_chars: { stdout: number } };
        del?: string;
      };
      if (rec.put) live.set(rec.put.run_id, rec.put);
      if (rec.del) live.delete(rec.del);
    } catch {
      // a torn last line
    }
  }
  return live;
}

describe('agent lifecycle (pglite)', () => {
  let h: RunsHarness;
  let main: TestAgent;
  const pair = (name: string): Promise<Paired> => h.pair(name);
  const launch = async (
    name: string,
    paired: Paired,
    args: string[],
    opts?: Parameters<typeof launchAgent>[4],
  ) => {
    const agent = await launchAgent(h.admin, name, paired, args, opts);
    h.agents.push(agent);
    return agent;
  };
  const pinned = (a: { workstationId: string }, command: string) => ({
    runtime: 'process',
    command: ['/bin/sh', '-c', command],
    placement: { workstation_id: a.workstationId },
  });
  const workstation = async (id: string) =>
    (await h.admin.listWorkstations()).workstations.find((w) => w.id === id);
  /** No timing assertion: two full scheduling passes later, the run is still where it was. */
  const afterPasses = async (id: string) => {
    await h.cp.scheduler.pass();
    await h.cp.scheduler.pass();
    return statusOf(h.admin, id);
  };

  beforeAll(async () => {
    h = await startRunsHarness('pglite');
    main = await h.startAgent('lc-main', ['--runtime', 'process', '--max-runs', '2']);
  }, 120_000);
  afterAll(async () => h?.close());

  it('re-adoption: an agent killed with SIGKILL mid-run is replaced by a new one that finishes its runs exactly once (from its journal)', async () => {
    const paired = await pair('lc-readopt');
    const first = await launch('lc-readopt', paired, ['--runtime', 'process', '--max-runs', '2']);
    const { run } = await h.admin.submitRun(pinned(paired, 'echo start $$; sleep 8; echo end; exit 3'));
    const { run: other } = await h.admin.submitRun(pinned(paired, 'echo other $$; sleep 6; echo bye'));
    const out = await eventually(async () => {
      const s = await stdoutOf(h.admin, run.id);
      return /start \d+/.test(s) ? s : undefined;
    }, 'the first output');
    const workload = Number(/start (\d+)/.exec(out)![1]);
    await eventually(async () => /other \d+/.test(await stdoutOf(h.admin, other.id)), 'the other output');
    // Both runs' states are in the agent's one journal (no per-run files): wait until it records
    // the output sent, then kill the agent.
    const journal = join(paired.configDir, 'state', 'agent', 'journal');
    await eventually(
      async () =>
        (journalStates(journal).get(run.id)?.log_chars.stdout ?? 0) > 0 &&
        (journalStates(journal).get(other.id)?.log_chars.stdout ?? 0) > 0,
      'the journal to record the output sent',
    );
    expect(existsSync(join(paired.configDir, 'state', 'agent', 'runs'))).toBe(false);
    expect((await statusOf(h.admin, run.id)).status).toBe('running');
    process.kill(first.agentPid, 'SIGKILL');
    expect((await first.cli).exitCode).not.toBe(0);
    // The process runtime detached the workload: it outlives the agent.
    expect(alive(first.agentPid)).toBe(false);
    expect(alive(workload)).toBe(true);

    const second = await launch('lc-readopt-2', paired, ['--runtime', 'process', '--max-runs', '2']);
    expect(second.output().match(/re-adopted/g)).toHaveLength(2);
    const done = await terminal(h.admin, run.id);
    expect(done).toMatchObject({
      status: 'failed',
      exit_code: 3,
      failure_kind: 'nonzero-exit',
      attempt: 1,
      workstation_id: paired.workstationId,
    });
    expect(await terminal(h.admin, other.id)).toMatchObject({
      status: 'completed',
      exit_code: 0,
      attempt: 1,
    });
    const stdout = await stdoutOf(h.admin, run.id);
    expect(stdout.match(/start \d+/g)).toHaveLength(1);
    expect(stdout.match(/^end$/gm)).toHaveLength(1);
    expect(stdout).toBe(`start ${workload}\nend\n`);
    expect(await stdoutOf(h.admin, other.id)).toMatch(/^other \d+\nbye\n$/);
    const events = await allEvents(h.admin, run.id);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, j) => j + 1));
    expect(events.filter((e) => e.type === 'terminal_status')).toHaveLength(1);
    expect(events.some((e) => e.type === 'error')).toBe(false);
    await eventually(async () => !alive(workload), 'the workload to be gone');
    // Finished runs are forgotten in the journal.
    await eventually(async () => journalStates(journal).size === 0, 'the journal to forget both runs');
  });

  it('a re-adopted run is still stopped at its timeout_s by the new agent (the start time is in the journal)', async () => {
    const paired = await pair('lc-readopt-timeout');
    const first = await launch('lc-readopt-timeout', paired, ['--runtime', 'process', '--max-runs', '1']);
    const { run } = await h.admin.submitRun({ ...pinned(paired, 'echo start $$; sleep 300'), timeout_s: 8 });
    const out = await eventually(async () => {
      const s = await stdoutOf(h.admin, run.id);
      return /start \d+/.test(s) ? s : undefined;
    }, 'the first output');
    const workload = Number(/start (\d+)/.exec(out)![1]);
    const journal = join(paired.configDir, 'state', 'agent', 'journal');
    await eventually(
      async () => (journalStates(journal).get(run.id)?.log_chars.stdout ?? 0) > 0,
      'the journal to record the output sent',
    );
    process.kill(first.agentPid, 'SIGKILL');
    await first.cli;
    expect(alive(workload)).toBe(true);

    const second = await launch('lc-readopt-timeout-2', paired, ['--runtime', 'process', '--max-runs', '1']);
    expect(second.output()).toMatch(/re-adopted/);
    // Ended by the agent at 8 s (the control plane's backstop would wait 60 s more and say so).
    expect(await terminal(h.admin, run.id, 45_000)).toMatchObject({
      status: 'failed',
      failure_kind: 'timeout',
      failure_message: 'exceeded its timeout of 8s',
      attempt: 1,
    });
    await eventually(async () => !alive(workload), 'the workload to be stopped');
  });

  it('--once takes one run, finishes it and exits 0; the next run stays queued', async () => {
    const paired = await pair('lc-once');
    const agent = await launch('lc-once', paired, ['--runtime', 'process', '--once']);
    // One slot (--max-runs 1): the first is offered, the second waits in the queue.
    const first = (await h.admin.submitRun(pinned(paired, 'echo first'))).run;
    const second = (await h.admin.submitRun(pinned(paired, 'echo second'))).run;
    const r = await agent.cli;
    expect(r.exitCode, agent.output()).toBe(0);
    expect(await terminal(h.admin, first.id)).toMatchObject({
      status: 'completed',
      exit_code: 0,
      workstation_id: paired.workstationId,
    });
    expect(await stdoutOf(h.admin, first.id)).toBe('first\n');
    // An offer of the second run that reached the agent on its way out goes back to the queue.
    await eventually(
      async () => (await statusOf(h.admin, second.id)).status === 'queued',
      'the second run queued',
    );
    expect(await afterPasses(second.id)).toMatchObject({ status: 'queued', attempt: 1, started_at: null });
    expect(await allEvents(h.admin, second.id)).toEqual([]);
    expect((await workstation(paired.workstationId))?.listening).toBe(false);
    await h.admin.cancelRun(second.id);
  });

  it('--bundle: the CLI packs and uploads a directory, the agent unpacks it into the working directory', async () => {
    const dir = join(h.root, 'bundle-src');
    mkdirSync(join(dir, 'sub'), { recursive: true });
    writeFileSync(join(dir, 'hello.txt'), 'hello from the bundle\n');
    writeFileSync(join(dir, 'sub', 'more.txt'), 'nested\n');
    const r = await runt(
      [
        'run',
        'submit',
        '--bundle',
        dir,
        '--runtime',
        'process',
        '--workstation',
        main.workstationId,
        '--',
        'sh',
        '-c',
        'cat hello.txt sub/more.txt',
      ],
      h.adminEnv,
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const id = r.stdout.trim();
    expect(await terminal(h.admin, id)).toMatchObject({
      status: 'completed',
      exit_code: 0,
      workstation_id: main.workstationId,
    });
    expect(await stdoutOf(h.admin, id)).toBe('hello from the bundle\nnested\n');
    expect((await statusOf(h.admin, id)).bundle?.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('bundles: bytes uploaded under another sha256 are refused (400) and cannot be named by a run', async () => {
    const wrong = 'a'.repeat(64);
    await expect(
      h.admin.uploadBundle(wrong, new TextEncoder().encode('not what the digest says')),
    ).rejects.toMatchObject({ status: 400, code: 'bundle-digest-mismatch' });
    await expect(
      h.admin.submitRun({ ...pinned(main, 'true'), bundle: { sha256: wrong } }),
    ).rejects.toMatchObject({ status: 400, code: 'bundle-missing' });
  });

  it('drain: the running run completes, the agent exits 0, a new run stays queued until the next agent starts', async () => {
    const paired = await pair('lc-drain');
    const agent = await launch('lc-drain', paired, ['--runtime', 'process']);
    const go = join(h.root, 'drain-go');
    const { run } = await h.admin.submitRun(
      pinned(paired, `echo drain-start; while [ ! -f ${go} ]; do sleep 0.05; done; echo drain-end`),
    );
    await eventually(
      async () => (await stdoutOf(h.admin, run.id)).includes('drain-start'),
      'the run to start',
    );

    const d = await runt(['admin', 'drain', paired.workstationId, '--url', h.cp.url], {
      RUNT_ADMIN_TOKEN: h.adminEnv.RUNT_ADMIN_TOKEN,
    });
    expect(d.exitCode, d.stderr).toBe(0);
    expect(d.stdout).toContain(`Draining ${paired.workstationId}`);
    expect((await workstation(paired.workstationId))?.status).toBe('draining');
    await eventually(async () => agent.output().includes('drain requested'), 'the agent to hear the drain');
    const later = (await h.admin.submitRun(pinned(paired, 'echo after-drain'))).run;
    expect((await afterPasses(later.id)).status).toBe('queued');
    // The agent is still there, waiting for its run.
    expect(agent.cli.exitCode).toBeNull();
    expect((await statusOf(h.admin, run.id)).status).toBe('running');

    writeFileSync(go, '');
    const r = await agent.cli;
    expect(r.exitCode, agent.output()).toBe(0);
    expect(await statusOf(h.admin, run.id)).toMatchObject({ status: 'completed', exit_code: 0 });
    expect(await stdoutOf(h.admin, run.id)).toBe('drain-start\ndrain-end\n');
    expect(await afterPasses(later.id)).toMatchObject({ status: 'queued', attempt: 1 });
    const gone = await eventually(async () => {
      const w = await workstation(paired.workstationId);
      return w && !w.listening && w.status === 'offline' ? w : undefined;
    }, 'the drained workstation offline');
    expect(gone.status).toBe('offline');

    // A new agent process for the workstation is not draining: it takes the queued run.
    const next = await launch('lc-drain-2', paired, ['--runtime', 'process']);
    expect(await terminal(h.admin, later.id)).toMatchObject({
      status: 'completed',
      workstation_id: paired.workstationId,
    });
    expect(await stdoutOf(h.admin, later.id)).toBe('after-drain\n');
    expect(next.output()).not.toContain('drain requested');
    expect((await workstation(paired.workstationId))?.status).toBe('online');
  });

  it('drain reaches an agent without a link through the answer to its heartbeat', async () => {
    const paired = await pair('lc-drain-poll');
    const agent = await launch('lc-drain-poll', paired, ['--runtime', 'process', '--no-link'], {
      env: { RUNT_HEARTBEAT_INTERVAL_MS: '300' },
    });
    const d = await runt(['admin', 'drain', paired.workstationId, '--json'], h.adminEnv);
    expect(d.exitCode, d.stderr).toBe(0);
    expect(JSON.parse(d.stdout).workstation).toMatchObject({ id: paired.workstationId, status: 'draining' });
    const r = await agent.cli;
    expect(r.exitCode, agent.output()).toBe(0);
    expect(agent.output()).toContain('drain requested');
    expect((await workstation(paired.workstationId))?.listening).toBe(false);
  });

  it("runt admin drain of an unknown workstation fails with the server's message", async () => {
    const r = await runt(['admin', 'drain', 'ws_nope'], h.adminEnv);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('no such workstation');
  });
});
