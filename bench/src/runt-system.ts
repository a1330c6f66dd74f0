import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { redeemPairingCode } from '@runt/pairing';
import { ControlPlaneClient, MAX_RUNS_PER_BATCH } from '@runt/protocol';
import type { CpCounts, CpHostConfig, CpHostRequest } from './cp-host.js';
import {
  createBenchDatabase,
  ServerWindow,
  type BenchDatabase,
  type ServerPhase,
} from './postgres-server.js';
import {
  CpuMeter,
  mainThreadCpuSeconds,
  processCpuSeconds,
  processStartTime,
  processTree,
  processWrites,
  systemCpuSeconds,
} from './proc-cpu.js';
import { countersByLabel, labelDelta, stragglers, type RunTiming } from './run-counts.js';
import { FINISHED_SINCE_SQL, PHASE_MARK_SQL, TERMINAL_SQL as TERMINAL } from './phase-runs.js';
import { loadAverage, nowMs, percentile, sleep } from './stats.js';

export interface RuntSystemOptions {
  backend: 'postgres' | 'pglite';
  /** Agents, each its own `runt workstation run --runtime fake` process with its own credential. */
  agents: number;
  /** Runs each agent takes at once (`--max-runs`). */
  maxRuns?: number;
  /** Runs each agent takes ahead of a free slot (`--prefetch`; default 0). */
  prefetch?: number;
  /**
   * Write a `--cpu-prof` profile of the control plane and of the first agent into this
   * directory, and one of the control plane per phase (`control-plane-<backend>-<phase>`: the
   * measured window only).
   */
  cpuProfDir?: string;
  /**
   * Extra Node flags for every agent process (`--heap-prof`, `--cpu-prof --cpu-prof-dir=…`):
   * with them each agent is started as `node <flags> <runt-agent bin>`.
   */
  agentNodeArgs?: string[];
  /**
   * Node flags for the odd-numbered agents instead of `agentNodeArgs` (agent 1 of 2): two sets of
   * flags measured side by side in one phase, under the same load at the same moments.
   */
  oddAgentNodeArgs?: string[];
  /** Extra Node flags for the control plane's process (`--trace-gc`, V8 heap flags): an A/B of a flag in one build. */
  cpNodeArgs?: string[];
  /** How the bench sends its submits: `node` (the client's `nodeHttp`, default) or `fetch`. */
  submitHttp?: 'node' | 'fetch';
}

/** One runt phase: throughput, CPU per run split, and what each run cost in requests, messages and statements. */
export interface RuntMeasurement {
  backend: 'postgres' | 'pglite';
  phase: 'drain' | 'burst' | 'burst-batch' | 'paced';
  agents: number;
  runs: number;
  finished: number;
  completed: number;
  seconds: number;
  runsPerSecond: number;
  /** CPU milliseconds per run; on PGlite the database runs inside the control plane. */
  cpuMsPerRun: {
    controlPlane: number;
    agents: number;
    /**
     * Of `agents`, their main threads' (the JavaScript); the rest is their helper threads' (V8's
     * concurrent compilers and GC, libuv's pool: the journal's writes and fsyncs).
     */
    agentsMainThread: number;
    database: number;
    /** Of `database`, its backends' time in the kernel (stime: sockets, WAL writes and fsyncs). */
    databaseSystem: number;
    total: number;
  };
  /**
   * Whole counts over the phase (its per-run figures have two decimals: one re-queue in 10,000
   * runs reads 0.00): re-queues by reason (`runt_cp_run_requeues_total`) and offers.
   */
  counts: { requeues: Record<string, number> | undefined; offers: number | undefined };
  /** When its last run finished > 1 s after its p99 finish: the last few runs, and the phase's start (ms, database clock). */
  stragglers?: { startMs: number } & NonNullable<ReturnType<typeof stragglers>>;
  /** On Postgres: the shared server's part of the phase (CHECKPOINT before it, WAL, checkpoints in it). */
  server?: ServerPhase;
  perRun: {
    /** Every HTTP request but the bench's /metrics scrapes, submits included. */
    http: number;
    /** HTTP requests other than the submit (`POST /api/runs`): what the agents sent. */
    agentHttp: number;
    /** Link messages both ways (the cp-host meter). */
    linkMessages: number;
    /** Fenced run calls answered over the link (`runt_cp_link_requests_total`), when counted. */
    linkRequests: number | undefined;
    sql: number;
    /** Round trips to the database (a `BEGIN` riding with a statement, or a statement with a `COMMIT`, is none). */
    sqlRoundTrips: number;
    /** The control plane's write syscalls (`syscw` of /proc/<pid>/io: database and link sockets, one `writev` each). */
    cpWrites: number;
    offers: number | undefined;
    /** Offer messages sent (`runt_cp_offer_messages_total`; several runs may share one), when counted. */
    offerMessages: number | undefined;
    requeues: number | undefined;
  };
  /** submit→accepted in milliseconds (database timestamps). */
  acceptedP50: number;
  acceptedP99: number;
  /** Paced phase: the submit rate. */
  rate?: number;
  /** Drain: how long the backlog took to submit while the agents were stopped; burst: how long the submits took. */
  submitSeconds?: number;
  /**
   * Burst: CPU milliseconds per run of the bench process that sent the submits (an HTTP client
   * on the same 2 cores; not in `cpuMsPerRun`, as no peer's enqueue is).
   */
  submitterCpuMsPerRun?: number;
  /**
   * Drain: runs not finished when the agents were continued (the backlog: `runs`, less any a
   * keep-alive pulse let them finish). No older run is unfinished: warm-up runs are all done.
   */
  backlog?: number;
  /** Drain: the control plane's CPU milliseconds per submit while the backlog was submitted (agents stopped). */
  submitCpMsPerRun?: number;
  /** The most frequent SQL statements of the phase, per run (first words). */
  sqlMix: string[];
  /** Agent processes (`runt workstation run`) and run slots (`--max-runs`) of each. */
  maxRuns: number;
  load: number;
}

interface Scrape {
  http: number;
  submits: number;
  linkRequests: number | undefined;
  offers: number | undefined;
  offerMessages: number | undefined;
  requeues: number | undefined;
  requeuesByReason: Record<string, number> | undefined;
}

const f2 = (x: number) => x.toFixed(2);

/**
 * The extra Node flags of agent `i`: `oddAgentNodeArgs` for the odd-numbered ones when given,
 * else `agentNodeArgs` (none by default).
 *
 * @example
 * agentNodeArgsOf(1, { agentNodeArgs: ['--a'], oddAgentNodeArgs: ['--b'] }); // ['--b']
 */
export function agentNodeArgsOf(
  i: number,
  o: Pick<RuntSystemOptions, 'agentNodeArgs' | 'oddAgentNodeArgs'>,
): string[] {
  return (i % 2 === 1 ? o.oddAgentNodeArgs : undefined) ?? o.agentNodeArgs ?? [];
}

/** The `runt-agent` bin of @runt/agent (what `runt workstation run` starts). */
export function agentBin(): string {
  return join(dirname(dirname(fileURLToPath(import.meta.resolve('@runt/agent')))), 'dist', 'bin.js');
}

/** The `runt` CLI's bin, as installed next to this package. */
export function cliBin(): string {
  return join(dirname(dirname(fileURLToPath(import.meta.resolve('@runt/cli')))), 'bin', 'run.js');
}

/**
 * runt as users run it: a control plane process (the bench's `cp-host`, i.e. startControlPlane
 * with statement and link-message meters) and `agents` processes started with
 * `runt workstation run --runtime fake`, each paired through the API with its own credential
 * (passed as RUNT_CLOUD_URL / RUNT_CLOUD_TOKEN, as the CLI documents) and its own state dir.
 *
 * @example
 * const r = await RuntSystem.start({ backend: 'pglite', agents: 2 }); console.log(await r.burst(100)); await r.close();
 */
export class RuntSystem {
  private seq = 0;
  private readonly pending = new Map<
    number,
    (m: { rows?: unknown[]; counts?: CpCounts; error?: string }) => void
  >();
  private readonly agentProcs: ChildProcess[] = [];
  private readonly agentStderr: string[] = [];
  /** The open phase's server window (postgres-server.ts), closed by `end` (or by `close` after a failure). */
  private window: ServerWindow | undefined;

  private constructor(
    private readonly o: RuntSystemOptions,
    private readonly cp: ChildProcess,
    private readonly url: string,
    private readonly admin: ControlPlaneClient,
    private readonly adminToken: string,
    private readonly db: BenchDatabase | undefined,
    private readonly root: string,
  ) {
    cp.on('message', (m: { id?: number }) => {
      if (m.id !== undefined) {
        this.pending.get(m.id)?.(m as { rows?: unknown[]; counts?: CpCounts; error?: string });
        this.pending.delete(m.id);
      }
    });
  }

  static async start(o: RuntSystemOptions): Promise<RuntSystem> {
    const root = mkdtempSync(join(tmpdir(), 'runt-bench-runt-'));
    const db = o.backend === 'postgres' ? await createBenchDatabase('runt') : undefined;
    const config: CpHostConfig = {
      backend: o.backend,
      dataDir: join(root, 'cp'),
      ...(db ? { url: db.url } : {}),
    };
    const cp = fork(new URL('../dist/cp-host.js', import.meta.url), [], {
      env: { ...process.env, BENCH_CP: JSON.stringify(config) },
      execArgv: [
        ...(o.cpuProfDir
          ? [
              '--cpu-prof',
              '--cpu-prof-dir',
              o.cpuProfDir,
              '--cpu-prof-name',
              `control-plane-${o.backend}.cpuprofile`,
            ]
          : []),
        ...(o.cpNodeArgs ?? []),
      ],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const ready = await new Promise<{ url: string; adminToken: string }>((resolve, reject) => {
      cp.once('message', resolve);
      cp.once('exit', (code) => reject(new Error(`control plane exited (${code})`)));
    });
    // A loaded single-process control plane (PGlite) may answer a burst of submits slowly: wait, do
    // not fail. The submits go over the client's keep-alive `node:http` transport (its option for
    // Node callers with many small calls): `fetch` costs ~0.38 ms of the bench's CPU per submit
    // against ~0.10 (docs/benchmarks.md); BENCH_SUBMIT_HTTP=fetch measures with `fetch`.
    const admin = new ControlPlaneClient({
      url: ready.url,
      token: ready.adminToken,
      timeoutMs: 120_000,
      nodeHttp: o.submitHttp !== 'fetch',
    });
    const system = new RuntSystem(o, cp, ready.url, admin, ready.adminToken, db, root);
    try {
      await system.startAgents();
    } catch (e) {
      await system.close();
      throw e;
    }
    return system;
  }

  private ask(req: CpHostRequest): Promise<{ rows?: unknown[]; counts?: CpCounts; error?: string }> {
    const id = ++this.seq;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.cp.send({ ...req, id });
    });
  }

  private async sql<T>(sql: string, params?: unknown[]): Promise<T[]> {
    const r = await this.ask({ type: 'query', sql, ...(params ? { params } : {}) });
    if (r.error) throw new Error(r.error);
    return r.rows as T[];
  }

  private async startAgents(): Promise<void> {
    const bin = cliBin();
    const config = join(this.root, 'config');
    mkdirSync(config);
    for (let i = 0; i < this.o.agents; i++) {
      const { pairing } = await this.admin.mintPairingCode();
      const r = await redeemPairingCode(this.url, pairing.code, { display_name: `bench-${i}` });
      const args = [
        '--runtime',
        'fake',
        '--max-runs',
        String(this.o.maxRuns ?? 4),
        '--prefetch',
        String(this.o.prefetch ?? 0),
        '--state-dir',
        join(this.root, `agent-${i}`),
        '--shutdown-grace-ms',
        '0',
      ];
      // Node refuses --cpu-prof in NODE_OPTIONS and the CLI does not pass its flags on, so the
      // one profiled agent is started as `node --cpu-prof <runt-agent bin>`: what
      // `runt workstation run` itself runs, with the same environment.
      const profiled = this.o.cpuProfDir !== undefined && i === 0;
      const nodeArgs = [
        ...(profiled
          ? [
              '--cpu-prof',
              `--cpu-prof-dir=${this.o.cpuProfDir}`,
              `--cpu-prof-name=agent-${this.o.backend}.cpuprofile`,
            ]
          : []),
        ...agentNodeArgsOf(i, this.o),
      ];
      const argv =
        nodeArgs.length > 0 ? [...nodeArgs, agentBin(), ...args] : [bin, 'workstation', 'run', ...args];
      const child = spawn(process.execPath, argv, {
        env: {
          ...process.env,
          XDG_CONFIG_HOME: config,
          RUNT_CLOUD_URL: this.url,
          RUNT_CLOUD_TOKEN: r.credential.token,
          RUNT_WORKSTATION_ID: r.workstation.id,
          RUNT_LOG_LEVEL: 'warn',
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      child.stderr.on('data', (d: Buffer) => {
        if (this.agentStderr.join('').length < 4000) this.agentStderr.push(String(d));
      });
      this.agentProcs.push(child);
    }
    for (const deadline = Date.now() + 120_000; ;) {
      const [row] = await this.sql<{ n: number }>(
        `select count(*)::int as n from workstations where link_state = 'connected'`,
      );
      if (row!.n >= this.o.agents) break;
      if (Date.now() > deadline)
        throw new Error(
          `only ${row!.n} of ${this.o.agents} agents linked in 120 s: ${this.agentStderr.join('').slice(0, 500)}`,
        );
      await sleep(200);
    }
  }

  private agentPids(): number[] {
    return this.agentProcs.flatMap((p) => (p.pid ? processTree(p.pid) : []));
  }

  /**
   * One scrape of `/metrics`: HTTP requests (the scrapes themselves left out), submits, and the
   * run-path counters; a counter the control plane does not export yet is undefined.
   */
  private async scrape(): Promise<Scrape> {
    const text = await (
      await fetch(`${this.url}/metrics`, { headers: { authorization: `Bearer ${this.adminToken}` } })
    ).text();
    const sum = (name: string, keep: (labels: string) => boolean = () => true) => {
      let found = false;
      let n = 0;
      for (const line of text.split('\n')) {
        if (!line.startsWith(`${name} `) && !line.startsWith(`${name}{`)) continue;
        found = true;
        if (keep(line.slice(name.length, line.lastIndexOf(' ')))) n += Number(line.split(' ').pop());
      }
      return found ? n : undefined;
    };
    return {
      http: sum('runt_cp_http_requests_total', (l) => !l.includes('route="/metrics"')) ?? 0,
      submits:
        sum(
          'runt_cp_http_requests_total',
          (l) => l.includes('method="POST"') && l.includes('route="/api/runs"'),
        ) ?? 0,
      linkRequests: sum('runt_cp_link_requests_total'),
      offers: sum('runt_cp_run_offers_total'),
      offerMessages: sum('runt_cp_offer_messages_total'),
      requeues: sum('runt_cp_run_requeues_total'),
      requeuesByReason: countersByLabel(text, 'runt_cp_run_requeues_total', 'reason'),
    };
  }

  /** Counters and CPU meters for one phase. */
  private async begin() {
    // The server's state evened out before the meters start (CHECKPOINT, postgres-server.ts).
    this.window = this.db ? await ServerWindow.open() : undefined;
    const cpu = {
      cp: new CpuMeter(),
      agents: new CpuMeter(),
      agentsMain: new CpuMeter(mainThreadCpuSeconds),
      db: new CpuMeter(),
      dbSystem: new CpuMeter(systemCpuSeconds),
    };
    cpu.cp.start([this.cp.pid!]);
    const agents = this.agentPids();
    cpu.agents.start(agents);
    cpu.agentsMain.start(agents);
    const dbPids = this.db ? await this.db.backendPids() : [];
    cpu.db.start(dbPids);
    cpu.dbSystem.start(dbPids);
    const counts = (await this.ask({ type: 'counts' })).counts!;
    const metrics = await this.scrape();
    const [t] = await this.sql<{ t: string }>(`select now()::text as t`);
    const [mark] = await this.sql<{ mark: string }>(PHASE_MARK_SQL);
    // The phase's own profile of the control plane (beside the whole process's --cpu-prof).
    if (this.o.cpuProfDir) await this.ask({ type: 'profile', action: 'start' });
    return {
      cpu,
      counts,
      metrics,
      dbStart: t!.t,
      mark: mark!.mark,
      load: loadAverage(),
      cpWrites: processWrites(this.cp.pid!),
    };
  }

  /** `from`: the window's start in ms since the epoch (database clock), or 'db' for the first run's created_at. */
  private async end(
    b: Awaited<ReturnType<RuntSystem['begin']>>,
    phase: RuntMeasurement['phase'],
    runs: number,
    from: number | 'db',
    timeoutMs: number,
  ) {
    const deadline = Date.now() + timeoutMs;
    let finished = 0;
    let seen = { n: 0, at: Date.now() };
    while (Date.now() < deadline) {
      const [row] = await this.sql<{ n: number }>(FINISHED_SINCE_SQL, [b.mark]);
      finished = row!.n;
      if (finished >= runs) break;
      // The count costs the control plane's database 0.5–10 ms, growing with this phase's runs
      // finished (phase-runs.ts; on PGlite in the control plane's one thread: ~5 % of a drain's,
      // every 100 ms; the raw peer counts in its own process). Far from done, look again when
      // about half of the rest should be done at the rate since the last look (100 ms–1 s); the phase's rate comes from
      // the runs' finished_at, not from when this loop saw them.
      const now = Date.now();
      const rate = (finished - seen.n) / Math.max(1, now - seen.at);
      seen = { n: finished, at: now };
      await sleep(rate > 0 ? Math.min(1000, Math.max(100, (runs - finished) / rate / 2)) : 100);
    }
    b.cpu.cp.sample([this.cp.pid!]);
    const agents = this.agentPids();
    b.cpu.agents.sample(agents);
    b.cpu.agentsMain.sample(agents);
    if (this.db) {
      const pids = await this.db.backendPids();
      b.cpu.db.sample(pids);
      b.cpu.dbSystem.sample(pids);
    }
    const server = await this.window?.close();
    this.window = undefined;
    // Before the profile is written out (its file's writes are not the phase's).
    const cpWrites = processWrites(this.cp.pid!) - b.cpWrites;
    if (this.o.cpuProfDir) {
      const file = join(this.o.cpuProfDir, `control-plane-${this.o.backend}-${phase}.cpuprofile`);
      const r = await this.ask({ type: 'profile', action: 'stop', file });
      if (r.error) throw new Error(`profile of the ${phase} phase: ${r.error}`);
    }
    const counts = (await this.ask({ type: 'counts' })).counts!;
    const metrics = await this.scrape();
    const delta = (k: Exclude<keyof Scrape, 'requeuesByReason'>) => {
      const a = metrics[k];
      const z = b.metrics[k];
      return a === undefined || z === undefined ? undefined : a - z;
    };
    const rows = await this.sql<{
      id: string;
      status: string;
      acc: number | null;
      c: number;
      o: number | null;
      a: number | null;
      s: number | null;
      f: number | null;
      attempt: number;
      ws: string | null;
    }>(
      `select id, status, extract(epoch from (accepted_at - created_at)) * 1000 as acc, extract(epoch from created_at) * 1000 as c,
              extract(epoch from offered_at) * 1000 as o, extract(epoch from accepted_at) * 1000 as a,
              extract(epoch from started_at) * 1000 as s, extract(epoch from finished_at) * 1000 as f,
              attempt, workstation_id as ws
         from runs where created_at >= $1::timestamptz`,
      [b.dbStart],
    );
    const start = from === 'db' ? Math.min(...rows.map((r) => Number(r.c))) : from;
    // Runs finished inside the window (a drain's agents may finish a few during its submit pulses).
    const inWindow = rows.filter((r) => r.f !== null && Number(r.f) >= start);
    const done = inWindow.map((r) => Number(r.f));
    const seconds = done.length > 0 ? (Math.max(...done) - start) / 1000 : Number.NaN;
    const accepted = rows.filter((r) => r.acc !== null).map((r) => Number(r.acc));
    const num = (x: number | null) => (x === null ? null : Number(x));
    const timings: RunTiming[] = inWindow.map((r) => ({
      id: r.id,
      createdMs: Number(r.c),
      offeredMs: num(r.o),
      acceptedMs: num(r.a),
      startedMs: num(r.s),
      finishedMs: Number(r.f),
      attempt: r.attempt,
      workstation: r.ws,
    }));
    const late = stragglers(timings);
    const per = (x: number) => x / done.length;
    const perMaybe = (x: number | undefined) => (x === undefined ? undefined : per(x));
    const cpuMs = (m: CpuMeter) => (m.seconds() * 1000) / done.length;
    return {
      backend: this.o.backend,
      phase,
      agents: this.o.agents,
      maxRuns: this.o.maxRuns ?? 4,
      runs,
      finished,
      completed: rows.filter((r) => r.status === 'completed').length,
      seconds,
      runsPerSecond: done.length / seconds,
      cpuMsPerRun: {
        controlPlane: cpuMs(b.cpu.cp),
        agents: cpuMs(b.cpu.agents),
        agentsMainThread: cpuMs(b.cpu.agentsMain),
        database: cpuMs(b.cpu.db),
        databaseSystem: cpuMs(b.cpu.dbSystem),
        total: cpuMs(b.cpu.cp) + cpuMs(b.cpu.agents) + cpuMs(b.cpu.db),
      },
      perRun: {
        http: per(delta('http')!),
        agentHttp: per(delta('http')! - delta('submits')!),
        linkMessages: per(counts.linkSent + counts.linkReceived - b.counts.linkSent - b.counts.linkReceived),
        linkRequests: perMaybe(delta('linkRequests')),
        sql: per(counts.statements - b.counts.statements),
        sqlRoundTrips: per(counts.roundTrips - b.counts.roundTrips),
        cpWrites: per(cpWrites),
        offers: perMaybe(delta('offers')),
        offerMessages: perMaybe(delta('offerMessages')),
        requeues: perMaybe(delta('requeues')),
      },
      sqlMix: Object.entries(counts.byStatement)
        .map(([k, n]) => [k, n - (b.counts.byStatement[k] ?? 0)] as const)
        .filter(([, n]) => n > 0)
        .sort((x, y) => y[1] - x[1])
        .slice(0, 6)
        .map(([k, n]) => `${f2(per(n))}× ${k}`),
      counts: {
        requeues: labelDelta(metrics.requeuesByReason, b.metrics.requeuesByReason),
        offers: delta('offers'),
      },
      ...(late ? { stragglers: { startMs: start, ...late } } : {}),
      ...(server ? { server } : {}),
      acceptedP50: percentile(accepted, 50),
      acceptedP99: percentile(accepted, 99),
      load: b.load,
    } satisfies RuntMeasurement;
  }

  private submitOne() {
    return this.admin.submitRun({ runtime: 'fake', command: ['sh', '-c', 'echo hi'] });
  }

  /** `n` runs in `POST /api/runs/batch` requests of up to 1,000, `concurrency` requests in flight. */
  private async submitBatches(n: number, concurrency = 2): Promise<void> {
    let left = n;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (left > 0) {
          const size = Math.min(MAX_RUNS_PER_BATCH, left);
          left -= size;
          await this.admin.submitRuns({
            runs: Array.from({ length: size }, () => ({ runtime: 'fake', command: ['sh', '-c', 'echo hi'] })),
          });
        }
      }),
    );
  }

  private async submitMany(n: number, concurrency = 50): Promise<void> {
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < n) {
          next++;
          await this.submitOne();
        }
      }),
    );
  }

  /**
   * Untimed warm-up before the measured phases (BENCH_WARMUP): `runs` runs through the real
   * path while the agents run, half submitted one `POST /api/runs` each (50 in flight) and half
   * in `POST /api/runs/batch` requests (2 in flight), as the phases submit; resolves once every
   * run of the system is finished, so a phase's counters, CPU baselines and `created_at` window
   * (all taken in its own `begin()`, after this) count none of them.
   */
  async warmUp(
    runs: number,
    timeoutMs = 180_000,
  ): Promise<{ runs: number; finished: number; seconds: number }> {
    const [before] = await this.sql<{ t: string }>(`select now()::text as t`);
    const t0 = nowMs();
    const single = Math.floor(runs / 2);
    await Promise.all([this.submitMany(single), this.submitBatches(runs - single)]);
    for (const deadline = Date.now() + timeoutMs; ;) {
      const [row] = await this.sql<{ finished: number; open: number }>(
        `select count(*) filter (where created_at >= $1::timestamptz and status in ${TERMINAL})::int as finished,
                count(*) filter (where status not in ${TERMINAL})::int as open
           from runs`,
        [before!.t],
      );
      if (row!.finished >= runs && row!.open === 0)
        return { runs, finished: row!.finished, seconds: (nowMs() - t0) / 1000 };
      if (Date.now() > deadline)
        throw new Error(
          `warm-up: ${row!.finished} of ${runs} runs finished in ${timeoutMs} ms, ${row!.open} open`,
        );
      await sleep(100);
    }
  }

  /**
   * Backlog drain: the agent processes are stopped (SIGSTOP, their links stay open), `runs` are
   * submitted, then the agents continue; timed from SIGCONT to the last run finished.
   */
  async drain(runs: number, timeoutMs = 180_000): Promise<RuntMeasurement> {
    const [before] = await this.sql<{ t: string }>(`select now()::text as t`);
    const [mark] = await this.sql<{ mark: string }>(PHASE_MARK_SQL);
    const pids = this.agentPids();
    for (const pid of pids) process.kill(pid, 'SIGSTOP');
    const t0 = nowMs();
    // Every 15 s the agents run for 300 ms, so they answer the control plane's pings (a link
    // silent for a whole 25 s round is dropped); runs they finish then are left out of the figures.
    const pulse = setInterval(() => {
      for (const pid of pids) process.kill(pid, 'SIGCONT');
      setTimeout(() => {
        for (const pid of pids) process.kill(pid, 'SIGSTOP');
      }, 300);
    }, 15_000);
    const cpCpu0 = processCpuSeconds(this.cp.pid!);
    const cpu0 = process.cpuUsage();
    try {
      await this.submitMany(runs);
    } finally {
      clearInterval(pulse);
    }
    const submitSeconds = (nowMs() - t0) / 1000;
    // The submits alone (the agents stopped): what one single submit costs each side.
    const submitCpMs = ((processCpuSeconds(this.cp.pid!) - cpCpu0) * 1000) / runs;
    const used = process.cpuUsage(cpu0);
    await sleep(350);
    // The drain starts with its own backlog and nothing else: no older run (a warm-up's) open.
    const [open] = await this.sql<{ backlog: number; older: number }>(
      `select count(*) filter (where created_at >= $1::timestamptz)::int as backlog,
              count(*) filter (where created_at < $1::timestamptz)::int as older
         from runs where status not in ${TERMINAL}`,
      [before!.t],
    );
    if (open!.older > 0) {
      for (const pid of pids) process.kill(pid, 'SIGCONT');
      throw new Error(`drain: ${open!.older} runs submitted before its backlog are not finished`);
    }
    // created_at of the backlog is before begin(): count runs from the submit on, time them from SIGCONT.
    const b = await this.begin();
    b.dbStart = before!.t;
    b.mark = mark!.mark;
    const [at] = await this.sql<{ ms: number }>(`select extract(epoch from now()) * 1000 as ms`);
    const cont = Number(at!.ms);
    for (const pid of pids) process.kill(pid, 'SIGCONT');
    const m = await this.end(b, 'drain', runs, cont, timeoutMs);
    return {
      ...m,
      backlog: open!.backlog,
      submitSeconds,
      submitterCpuMsPerRun: (used.user + used.system) / 1000 / runs,
      submitCpMsPerRun: submitCpMs,
    };
  }

  /**
   * Burst: `runs` submitted while the agents run, timed from the first run's `created_at` to the
   * last finish. `single`: one `POST /api/runs` per run, 50 in flight (phase `burst`); `batch`:
   * `POST /api/runs/batch` of 1,000 runs, 2 in flight (phase `burst-batch`), as a client with
   * 10,000 runs to submit would send them.
   */
  async burst(
    runs: number,
    timeoutMs = 180_000,
    via: 'single' | 'batch' = 'single',
  ): Promise<RuntMeasurement> {
    const b = await this.begin();
    const cpu0 = process.cpuUsage();
    const t0 = nowMs();
    await (via === 'batch' ? this.submitBatches(runs) : this.submitMany(runs));
    const submitSeconds = (nowMs() - t0) / 1000;
    const used = process.cpuUsage(cpu0);
    const m = await this.end(b, via === 'batch' ? 'burst-batch' : 'burst', runs, 'db', timeoutMs);
    return { ...m, submitSeconds, submitterCpuMsPerRun: (used.user + used.system) / 1000 / runs };
  }

  /** Below capacity: one submit every 1/rate s; submit→accepted p50/p99 is the figure. */
  async paced(rate: number, runs: number, timeoutMs = 180_000): Promise<RuntMeasurement> {
    const b = await this.begin();
    const t0 = nowMs();
    const sent: Promise<unknown>[] = [];
    for (let i = 0; i < runs; i++) {
      const wait = t0 + (i * 1000) / rate - nowMs();
      if (wait > 0) await sleep(wait);
      sent.push(this.submitOne());
    }
    await Promise.all(sent);
    return { ...(await this.end(b, 'paced', runs, 'db', timeoutMs)), rate };
  }

  /** Stops the agents (SIGTERM through the CLI, then SIGKILL of what is left), the control plane, and drops the database. */
  async close(): Promise<void> {
    const started = this.agentPids().map((pid) => ({ pid, since: processStartTime(pid) }));
    await Promise.all(
      this.agentProcs.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null || p.signalCode !== null) return resolve();
            const t = setTimeout(() => resolve(), 10_000);
            p.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
            p.kill('SIGTERM');
          }),
      ),
    );
    // What is left of the agents (the CLI starts each agent in its own process group): only
    // processes that are still the ones this bench started (same pid, same start time).
    for (const { pid, since } of started) {
      if (since === undefined || processStartTime(pid) !== since) continue;
      try {
        process.kill(pid, 'SIGCONT');
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (this.cp.exitCode === null) {
      const exited = new Promise((r) => this.cp.once('exit', r));
      this.cp.kill('SIGTERM');
      const t = setTimeout(() => this.cp.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    await this.window?.abandon();
    await this.db?.drop();
    rmSync(this.root, { recursive: true, force: true });
  }
}
