// `pnpm chaos`: runs on the process runtime over several agents that are killed -9 and restarted
// at random, with the control plane killed -9 and restarted on the same data. Each workload
// appends `<tag> start|end <pid> <ns>` to a ledger (O_APPEND); at the end every acknowledged run
// must be found, terminal and started at most once. Loopback only, bounded, ends only its own pids.
// A process that exits by itself (an agent's crash or refused start, a control plane's) is an
// unexpected exit: reported (exit code or signal, last stderr line) and restarted as a user's
// supervisor would (systemd `Restart=on-failure`: after 1 s, at most 5 starts in 10 s and 10 in
// all). The verdict (`verdict.failures`, exit code 1) fails on any lost, twice-started or stuck run,
// on run accounting that does not add up, on more than CHAOS_MAX_AGENT_EXITS (1) unexpected exits
// of one agent, on any of the control plane, and on a process the supervisor left down.
// Knobs: CHAOS_RUNS (200), CHAOS_AGENTS (4), CHAOS_BACKEND (pglite|postgres), CHAOS_SECONDS (120).
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redeemPairingCode } from '@runt/pairing';
import { ControlPlaneClient } from '@runt/protocol';
import { mintToken } from '@runt/transport-auth';
import type { CpHostConfig, CpHostRequest } from './cp-host.js';
import { createBenchDatabase } from './postgres-server.js';
import { processStartTime, processTree } from './proc-cpu.js';
import { cliBin } from './runt-system.js';
import { loadAverage, sleep } from './stats.js';

const RUNS = Number(process.env.CHAOS_RUNS ?? 200);
const AGENTS = Number(process.env.CHAOS_AGENTS ?? 4);
const BACKEND = (process.env.CHAOS_BACKEND ?? 'pglite') as 'pglite' | 'postgres';
const SECONDS = Number(process.env.CHAOS_SECONDS ?? 120);
/** After the chaos: how long every acknowledged run gets to become terminal (beyond a 30 s lease). */
const SETTLE_SECONDS = Number(process.env.CHAOS_SETTLE_SECONDS ?? 180);
const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'blocked']);
/** Unexpected exits one agent may have before the verdict fails. */
const MAX_AGENT_EXITS = Number(process.env.CHAOS_MAX_AGENT_EXITS ?? 1);

/** One process that exited by itself (not killed by the chaos, not stopped at the end). */
interface UnexpectedExit {
  who: string;
  /** Seconds into the chaos window. */
  at: number;
  code: number | null;
  signal: string | null;
  lastStderr: string;
  /** Its last line of output on either stream (an agent logs to stdout: what it was doing last). */
  lastOutput: string;
  /** Whether the supervisor restarted it (not after a clean exit 0, nor past its start limit). */
  restarted: boolean;
}

/**
 * What a user's supervisor does with a process that exits by itself — systemd's
 * `Restart=on-failure` with `RestartSec=1`, `StartLimitBurst=5` in `StartLimitIntervalSec=10`,
 * plus a cap of 10 restarts per process so a crash loop cannot outlast the chaos's bound.
 */
class Supervisor {
  static readonly DELAY_MS = 1000;
  private readonly restarts = new Map<string, number[]>();
  readonly exits: UnexpectedExit[] = [];
  readonly gaveUp = new Set<string>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;
  constructor(private readonly t0: () => number) {}

  /** Records the exit; restarts `start` after the delay unless clean, over the limits or stopping. */
  exited(
    who: string,
    code: number | null,
    signal: string | null,
    lastStderr: string,
    lastOutput: string,
    start: () => void | Promise<void>,
  ): void {
    const now = Date.now();
    const past = this.restarts.get(who) ?? [];
    const inBurst = past.filter((t) => t > now - 10_000).length;
    const failure = code !== 0 || signal !== null;
    const restart = !this.stopped && failure && inBurst < 5 && past.length < 10;
    // Not restarted (a clean exit, or past the start limit): down for the rest of the chaos.
    if (!restart && !this.stopped) this.gaveUp.add(who);
    this.exits.push({
      who,
      at: Math.round((now - this.t0()) / 100) / 10,
      code,
      signal,
      lastStderr: lastStderr.slice(0, 300),
      lastOutput: lastOutput.slice(0, 300),
      restarted: restart,
    });
    process.stderr.write(
      `chaos: ${who} exited by itself (${signal ?? `code ${code}`})${restart ? ', restarting in 1 s' : ''}: ${lastStderr.slice(0, 300)}\n`,
    );
    if (!restart) return;
    this.restarts.set(who, [...past, now]);
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.stopped) void start(); // a restart reports its own failure (never rejects)
    }, Supervisor.DELAY_MS);
    this.timers.add(t);
  }

  /** No more restarts (the end): pending ones are dropped. */
  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  count(prefix: string): number {
    return this.exits.filter((e) => e.who.startsWith(prefix)).length;
  }
}

/** Keeps the last non-empty line of a stream's output (for an exit's report). */
function lastLine(prev: string, chunk: string): string {
  const lines = chunk.split('\n').filter((l) => l.trim() !== '');
  return lines.length > 0 ? lines[lines.length - 1]!.trim() : prev;
}

const rand = (a: number, b: number) => a + Math.random() * (b - a);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Kills -9 the given pids if they are still the processes we started (same start time). */
function kill9(procs: { pid: number; since: number | undefined }[]): void {
  for (const { pid, since } of procs) {
    if (since === undefined || processStartTime(pid) !== since) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

class ControlPlane {
  proc: ChildProcess | undefined;
  private seq = 0;
  private readonly pending = new Map<number, (m: { rows?: unknown[]; error?: string }) => void>();
  private stopping = false;
  /**
   * @param onExit called when a started control plane exits by itself (not `kill9`, not `stop`),
   *   with its code or signal and last stderr line
   */
  constructor(
    private readonly config: CpHostConfig,
    private readonly onExit: (code: number | null, signal: string | null, lastStderr: string) => void,
  ) {}

  async start(): Promise<void> {
    const cp = fork(new URL('./cp-host.js', import.meta.url), [], {
      env: { ...process.env, BENCH_CP: JSON.stringify(this.config) },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    cp.stderr!.on('data', (d: Buffer) => {
      process.stderr.write(d);
      stderr = lastLine(stderr, String(d));
    });
    cp.on('message', (m: { id?: number }) => {
      if (m.id !== undefined) {
        this.pending.get(m.id)?.(m as { rows?: unknown[]; error?: string });
        this.pending.delete(m.id);
      }
    });
    cp.on('exit', (code, signal) => {
      for (const r of this.pending.values()) r({ error: 'control plane exited' });
      this.pending.clear();
      if (this.proc !== cp || this.stopping) return; // killed by the chaos, stopped at the end, or never up
      this.proc = undefined;
      this.onExit(code, signal, stderr);
    });
    await new Promise<void>((resolve, reject) => {
      cp.once('message', () => resolve());
      cp.once('exit', (code) => reject(new Error(`control plane exited (${code})`)));
    });
    this.proc = cp;
  }

  kill9(): void {
    if (this.proc?.pid && this.proc.exitCode === null) this.proc.kill('SIGKILL');
    this.proc = undefined;
  }

  async sql<T>(sql: string, params?: unknown[]): Promise<T[]> {
    const cp = this.proc;
    if (!cp) throw new Error('control plane down');
    const id = ++this.seq;
    const r = await new Promise<{ rows?: unknown[]; error?: string }>((resolve) => {
      this.pending.set(id, resolve);
      cp.send({ type: 'query', sql, ...(params ? { params } : {}), id } satisfies CpHostRequest & {
        id: number;
      });
    });
    if (r.error) throw new Error(r.error);
    return r.rows as T[];
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const cp = this.proc;
    if (!cp || cp.exitCode !== null) return;
    const exited = new Promise((r) => cp.once('exit', r));
    cp.kill('SIGTERM');
    const t = setTimeout(() => cp.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  }
}

interface Agent {
  i: number;
  token: string;
  workstationId: string;
  stateDir: string;
  proc?: ChildProcess;
  log: string;
  /** The current process's last stderr line (for an unexpected exit's report). */
  lastStderr: string;
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'runt-chaos-'));
  const ledger = join(root, 'ledger');
  writeFileSync(ledger, '');
  const db = BACKEND === 'postgres' ? await createBenchDatabase('chaos') : undefined;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const adminToken = mintToken('admin');
  // The chaos window starts once the control plane and the agents are up (reset below).
  let t0 = Date.now();
  const supervisor = new Supervisor(() => t0);
  // A control plane that exits before it is ready goes to the supervisor (restarted, or counted
  // as an unexpected exit in the report) instead of ending the harness.
  const restartControlPlane = (): Promise<void> =>
    cp
      .start()
      .catch((e: unknown) =>
        supervisor.exited(
          'control-plane',
          null,
          null,
          e instanceof Error ? e.message : String(e),
          '',
          restartControlPlane,
        ),
      );
  const cp = new ControlPlane(
    {
      backend: BACKEND,
      dataDir: join(root, 'cp'),
      port,
      adminToken,
      ...(db ? { url: db.url } : {}),
      // Kept for a post-mortem: the control plane's own account of every run.
      ...(process.env.CHAOS_KEEP ? { logFile: join(root, 'cp.log') } : {}),
    },
    (code, signal, lastStderr) =>
      supervisor.exited('control-plane', code, signal, lastStderr, lastStderr, restartControlPlane),
  );
  const admin = new ControlPlaneClient({ url, token: adminToken, timeoutMs: 30_000 });
  const agents: Agent[] = [];
  const config = join(root, 'config');
  mkdirSync(config);
  const kills = { agents: 0, controlPlane: 0 };
  let readopted = 0;

  let removed = false;
  let stopping = false;
  const startAgent = (a: Agent) => {
    // One process per state dir: a kill's restart and a supervisor's may both be due.
    if (stopping || (a.proc && a.proc.exitCode === null && a.proc.signalCode === null)) return;
    const child = spawn(
      process.execPath,
      [cliBin(), 'workstation', 'run', '--runtime', 'process', '--max-runs', '4', '--state-dir', a.stateDir],
      {
        env: {
          ...process.env,
          XDG_CONFIG_HOME: config,
          RUNT_CLOUD_URL: url,
          RUNT_CLOUD_TOKEN: a.token,
          RUNT_WORKSTATION_ID: a.workstationId,
          RUNT_LOG_LEVEL: 'info',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    a.lastStderr = '';
    const count = (d: Buffer) => {
      const s = String(d);
      readopted += s.split('"re-adopted"').length - 1;
      a.log = (a.log + s).slice(-4000);
      // An agent's last lines can arrive after its CLI's exit, once the run directory is
      // removed: a lost log line must not end the harness with an uncaught ENOENT (exit 1).
      if (removed) return;
      try {
        appendFileSync(join(root, `agent-${a.i}.log`), s);
      } catch {
        // the directory is gone (cleanup) — nothing left to keep
      }
    };
    child.stdout.on('data', count);
    child.stderr.on('data', count);
    child.stderr.on('data', (d: Buffer) => (a.lastStderr = lastLine(a.lastStderr, String(d))));
    // Killed by the chaos (`killAgent` forgets it first) or stopped at the end: expected.
    // Anything else exited by itself: reported, and restarted as a supervisor would.
    child.once('exit', (code, signal) => {
      if (a.proc !== child || stopping) return;
      a.proc = undefined;
      supervisor.exited(`agent-${a.i}`, code, signal, a.lastStderr, lastLine('', a.log), () => startAgent(a));
    });
    a.proc = child;
  };
  const killAgent = (a: Agent) => {
    const pid = a.proc?.pid;
    if (!pid || a.proc!.exitCode !== null) return;
    // The CLI and its runt-agent child, not the workloads (they are the agent's children and
    // must survive for re-adoption).
    const targets = processTree(pid).filter((p) => {
      if (p === pid) return true;
      try {
        const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
        return cmd.startsWith(process.execPath) || cmd.startsWith('node');
      } catch {
        return false;
      }
    });
    // Children first: the CLI's death ends the agent's token pipe, and an agent that sees it before
    // its own kill -9 starts a polite shutdown (stopping its workloads) instead of dying (issue 8).
    kill9(targets.reverse().map((p) => ({ pid: p, since: processStartTime(p) })));
    a.proc = undefined;
  };

  // Ends what this run started (and only that), once: at the end, or on SIGTERM/SIGINT (a CI
  // step that gives up on it), so nothing is left running either way.
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      stopping = true;
      supervisor.stop();
      for (const a of agents) {
        const p = a.proc;
        if (p && p.exitCode === null) {
          const exited = new Promise((r) => p.once('exit', r));
          p.kill('SIGTERM');
          await Promise.race([exited, sleep(10_000)]);
        }
        killAgent(a);
      }
      await cp.stop();
      await db?.drop();
      if (!process.env.CHAOS_KEEP) {
        removed = true;
        rmSync(root, { recursive: true, force: true });
      }
    })());
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`chaos: ${signal}, ending the processes it started\n`);
    void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);

  const acked = new Map<string, string>(); // tag → run id
  let submitFailures = 0;
  try {
    await cp.start();
    for (let i = 0; i < AGENTS; i++) {
      const { pairing } = await admin.mintPairingCode();
      const r = await redeemPairingCode(url, pairing.code, { display_name: `chaos-${i}` });
      const a: Agent = {
        i,
        token: r.credential.token,
        workstationId: r.workstation.id,
        stateDir: join(root, `agent-${i}`),
        log: '',
        lastStderr: '',
      };
      agents.push(a);
      startAgent(a);
    }

    t0 = Date.now();
    // Submits spread over the chaos window, each retried (same idempotency key) until acknowledged.
    const submitter = (async () => {
      for (let n = 0; n < RUNS; n++) {
        const wait = t0 + (n * SECONDS * 1000 * 0.8) / RUNS - Date.now();
        if (wait > 0) await sleep(wait);
        const tag = `c${n}`;
        const secs = rand(0.1, 3).toFixed(2);
        const body = {
          runtime: 'process',
          idempotency_key: `chaos-${tag}`,
          command: [
            'sh',
            '-c',
            `echo "${tag} start $$ $(date +%s%N)" >> ${ledger}; sleep ${secs}; echo "${tag} end $$ $(date +%s%N)" >> ${ledger}`,
          ],
        };
        for (let tries = 0; tries < 60 && !acked.has(tag); tries++) {
          try {
            const { run } = await admin.submitRun(body);
            acked.set(tag, run.id);
          } catch {
            submitFailures++;
            await sleep(1000);
          }
        }
      }
    })();

    // The chaos: every 2–6 s an agent killed -9 (restarted 0.5–4 s later), 1 time in 6 (and at
    // least once) the control plane.
    while (Date.now() - t0 < SECONDS * 1000) {
      await sleep(rand(2000, 6000));
      // At least one control-plane kill per run: due by the middle of the window.
      const cpDue = kills.controlPlane === 0 && Date.now() - t0 > (SECONDS * 1000) / 2;
      if ((cpDue || Math.random() < 1 / 6) && cp.proc) {
        cp.kill9();
        kills.controlPlane++;
        await sleep(rand(1000, 4000));
        await restartControlPlane();
      } else {
        // Only an agent whose process is up: one killed and not yet restarted would get a second
        // restart timer, two CLIs for one state dir, and the harness would lose track of one
        // (it then never exits after its report).
        const up = agents.filter((x) => x.proc?.pid && x.proc.exitCode === null);
        const a = up[Math.floor(Math.random() * up.length)];
        if (a) {
          killAgent(a);
          kills.agents++;
          setTimeout(() => startAgent(a), rand(500, 4000));
        }
      }
    }
    await submitter;
    await sleep(4500); // the last restarted agents are back

    // Settle: every acknowledged run terminal, bounded.
    let rows: { id: string; status: string; failure_kind: string | null; attempt: number }[] = [];
    const ids = [...acked.values()];
    for (const deadline = Date.now() + SETTLE_SECONDS * 1000; ;) {
      try {
        rows = await cp.sql(`select id, status, failure_kind, attempt from runs where id = any($1)`, [ids]);
        if (rows.length === ids.length && rows.every((r) => TERMINAL.has(r.status))) break;
      } catch (e) {
        // The control plane exited by itself (reported; the supervisor restarts it): ask again.
        if (Date.now() > deadline) throw e;
      }
      if (Date.now() > deadline) break;
      await sleep(1000);
    }

    const byId = new Map(rows.map((r) => [r.id, r]));
    const starts = new Map<string, { pid: string; t: number }[]>();
    const ends = new Map<string, number[]>();
    for (const line of readFileSync(ledger, 'utf8').split('\n')) {
      const [tag, kind, pid, t] = line.split(' ');
      if (!tag || !t) continue;
      if (kind === 'start') starts.set(tag, [...(starts.get(tag) ?? []), { pid: pid!, t: Number(t) / 1e6 }]);
      if (kind === 'end') ends.set(tag, [...(ends.get(tag) ?? []), Number(t) / 1e6]);
    }
    const lost = [...acked].filter(([, id]) => !byId.has(id)).map(([tag]) => tag);
    const twice = [...starts].filter(([, s]) => s.length > 1).map(([tag]) => tag);
    const concurrent = twice.filter((tag) => {
      const s = starts.get(tag)!.sort((a, b) => a.t - b.t);
      const firstEnd = (ends.get(tag) ?? []).sort((a, b) => a - b)[0];
      return firstEnd === undefined || s[1]!.t < firstEnd;
    });
    const stuck = rows.filter((r) => !TERMINAL.has(r.status));
    const tagOf = new Map([...acked].map(([tag, id]) => [id, tag]));
    const lostWithSuccess = rows.filter(
      (r) => r.status === 'failed' && r.failure_kind === 'runner-lost' && ends.has(tagOf.get(r.id)!),
    );
    // Every runner-lost attempt, with what the ledger says of its workload (a post-mortem aid).
    const runnerLost = rows
      .filter((r) => r.status === 'failed' && r.failure_kind === 'runner-lost')
      .map((r) => {
        const tag = tagOf.get(r.id)!;
        return { id: r.id, tag, started: starts.get(tag)?.length ?? 0, ended: ends.get(tag)?.length ?? 0 };
      });
    const status: Record<string, number> = {};
    for (const r of rows) {
      const k = r.status === 'failed' ? `failed/${r.failure_kind ?? '?'}` : r.status;
      status[k] = (status[k] ?? 0) + 1;
    }
    // The run accounting: every submit acknowledged, every run counted once, a completed run's
    // workload ran to its end, and no workload ran for a run nobody acknowledged.
    const completedWithoutWorkload = rows.filter(
      (r) => r.status === 'completed' && !ends.has(tagOf.get(r.id)!),
    ).length;
    const startedUnacknowledged = [...starts.keys()].filter((tag) => !acked.has(tag)).length;
    const counted = Object.values(status).reduce((n, c) => n + c, 0);
    const agentExits = new Map<string, number>();
    for (const e of supervisor.exits)
      if (e.who.startsWith('agent-')) agentExits.set(e.who, (agentExits.get(e.who) ?? 0) + 1);
    const failures = [
      lost.length > 0 && `${lost.length} acknowledged runs lost`,
      twice.length > 0 && `${twice.length} runs' workloads started twice`,
      stuck.length > 0 && `${stuck.length} runs not terminal after ${SETTLE_SECONDS} s`,
      acked.size < RUNS && `${RUNS - acked.size} of ${RUNS} submits never acknowledged`,
      counted !== acked.size && `${counted} runs counted by status for ${acked.size} acknowledged`,
      completedWithoutWorkload > 0 &&
        `${completedWithoutWorkload} runs completed without their workload's end`,
      startedUnacknowledged > 0 && `${startedUnacknowledged} workloads started for unacknowledged submits`,
      ...[...agentExits]
        .filter(([, n]) => n > MAX_AGENT_EXITS)
        .map(([who, n]) => `${who} exited by itself ${n} times (at most ${MAX_AGENT_EXITS})`),
      supervisor.count('control-plane') > 0 &&
        `the control plane exited by itself ${supervisor.count('control-plane')} times`,
      supervisor.gaveUp.size > 0 &&
        `left down by the supervisor (clean exit or start limit): ${[...supervisor.gaveUp].join(', ')}`,
    ].filter((f): f is string => typeof f === 'string');
    const report = {
      backend: BACKEND,
      runs: RUNS,
      acknowledged: acked.size,
      agents: AGENTS,
      seconds: Math.round((Date.now() - t0) / 1000),
      kills,
      submitRetries: submitFailures,
      lost: lost.length,
      executedTwice: twice.length,
      executedTwiceConcurrently: concurrent.length,
      stuck: stuck.length,
      runnerLostWithSuccessfulWorkload: lostWithSuccess.length,
      neverStarted: [...acked.keys()].filter((tag) => !starts.has(tag)).length,
      readopted,
      status,
      completedWithoutWorkload,
      startedUnacknowledged,
      runnerLost: runnerLost.slice(0, 20),
      unexpectedExits: {
        agents: supervisor.count('agent-'),
        controlPlane: supervisor.count('control-plane'),
        maxPerAgent: MAX_AGENT_EXITS,
        gaveUp: [...supervisor.gaveUp],
        exits: supervisor.exits.slice(0, 20),
      },
      verdict: { pass: failures.length === 0, failures },
      load: loadAverage(),
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    if (lost.length) process.stdout.write(`lost: ${lost.slice(0, 20).join(' ')}\n`);
    if (twice.length)
      process.stdout.write(
        `executed twice: ${twice
          .map((t) => acked.get(t))
          .slice(0, 20)
          .join(' ')}\n`,
      );
    if (stuck.length)
      process.stdout.write(
        `stuck: ${stuck
          .slice(0, 20)
          .map((r) => `${r.id}(${r.status})`)
          .join(' ')}\n`,
      );
    if (process.env.CHAOS_KEEP) process.stdout.write(`kept: ${root}\n`);
    process.exitCode = failures.length > 0 ? 1 : 0;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    await cleanup();
  }
}
main().catch((e: unknown) => {
  process.stderr.write(`chaos: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(2);
});
