// `pnpm bench` part two: control-plane replicas on one Postgres (issue 10). Every replica is a
// `runt-control-plane` process (its dist/bin.js) on a fresh `runt_bench_*` database; agents are
// link doubles in this process (a WebSocket plus HTTP claim/report, no runtime), so the figures
// are the control plane's. Loopback only, bounded; it ends only the processes it started.
//
//   BENCH_REPLICA_RUNS=1000        submits for the cross-replica offer latency
//   BENCH_REPLICA_THROUGHPUT=2000  runs per throughput measurement (1, 2 and 3 replicas)
//   BENCH_REPLICA_AGENTS=12        real agents (`runt-agent --runtime fake`, given all three URLs) for the kill
//   BENCH_REPLICA_PARTS=latency,throughput,kill
//   BENCH_REPLICA_CP_BIN=path      another build's dist/bin.js (a before/after comparison, back to back)
//   BENCH_REPLICA_WARMUP=3000      latency part: untimed submits first (each path): the replicas' JIT keeps
//                                  compiling for ~25 s of this load, so the figure is steady state, as a
//                                  long-lived replica serves (20 before 2026-12-02 18:00: docs/benchmarks.md)
//   BENCH_REPLICA_GAP_MS=0         latency part: a pause after each sample's finish before the next submit
//   BENCH_REPLICA_BACKLOG=0        latency part: runs queued first, of a runtime no workstation offers
//                                  (they stay queued: what a submit's placement passes over)
//   BENCH_REPLICA_FINISH=link      the doubles' claim and status report: over their link, as runt-agent
//                                  sends them (default), or `http` (the figures before 2026-12-03 23:10)
//   BENCH_SUBMIT_HTTP=node         the bench's HTTP client: node (node:http keep-alive, default) or fetch
//   BENCH_REPLICA_LATENCY=same,cross,floor  latency part: which of its measurements run; `floor` is the
//                                  cross-replica path's hops with nothing of runt in them
//                                  (notify-floor.ts), measured the same way, taking turns with
//                                  `cross` in blocks, so runt's figure is read against what the
//                                  machine gives that path in the same minutes
//   BENCH_REPLICA_FLOOR_BLOCK=100  samples per turn when `cross` and `floor` both run (each turn
//                                  after 5 untimed ones: the first after the other's turn is ~3× slower)
//   BENCH_TRACE=1                  latency part: each replica writes a per-step trace (RUNT_TRACE_FILE);
//                                  printed as the median time of each step after the submit was sent;
//                                  A's `pg.*` steps are Postgres' clock (`clock_timestamp()`) between the
//                                  statements of the submit's message (begun, locked, placed, committed)
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import pg from 'pg';
import {
  ControlPlaneClient,
  jsonAnswer,
  linkRequestOf,
  type ControlReplyMessage,
  type Run,
  type TransportVia,
} from '@runt/protocol';
import { mintToken } from '@runt/transport-auth';
import { createBenchDatabase, type BenchDatabase } from './postgres-server.js';
import { agentBin } from './runt-system.js';
import { loadAverage, nowMs, percentile, sleep } from './stats.js';
import { processCpuSeconds } from './proc-cpu.js';
import { stderrTail, stopProcesses, waitReady } from './replica-ready.js';
import { startNotifyFloor, type NotifyFloor } from './notify-floor.js';

const env = (name: string, fallback: string) => process.env[name] ?? fallback;
const LATENCY_RUNS = Number(env('BENCH_REPLICA_RUNS', '1000'));
const GAP_MS = Number(env('BENCH_REPLICA_GAP_MS', '0'));
const FLOOR_BLOCK = Number(env('BENCH_REPLICA_FLOOR_BLOCK', '100'));
/** Untimed samples at the start of each turn when paths take turns (see measureLatency). */
const BLOCK_SETTLE = 5;
if (!(Number.isInteger(FLOOR_BLOCK) && FLOOR_BLOCK > 0)) {
  console.error('BENCH_REPLICA_FLOOR_BLOCK: a whole number of samples, at least 1');
  process.exit(1);
}
const WARMUP = Number(env('BENCH_REPLICA_WARMUP', '3000'));
if (!/^\d+$/.test(String(process.env.BENCH_REPLICA_WARMUP ?? '3000'))) {
  console.error('BENCH_REPLICA_WARMUP: a whole number of submits');
  process.exit(1);
}
const BACKLOG = Number(env('BENCH_REPLICA_BACKLOG', '0'));
// The bench's HTTP calls go over the client's keep-alive `node:http` transport (as runt-agent's
// and bench.ts's submits do): `fetch` costs the caller ~0.38 ms of CPU per call against ~0.10,
// inside every latency sample (its `t0` is taken before the call). BENCH_SUBMIT_HTTP=fetch: fetch.
const NODE_HTTP = env('BENCH_SUBMIT_HTTP', 'node') !== 'fetch';
// The link doubles' claim and status report: over their link (default, as runt-agent sends them)
// or over HTTP (BENCH_REPLICA_FINISH=http: what every figure before 2026-12-03 23:10 UTC measured).
const FINISH_OVER_LINK = env('BENCH_REPLICA_FINISH', 'link') !== 'http';
const THROUGHPUT_RUNS = Number(env('BENCH_REPLICA_THROUGHPUT', '2000'));
const KILL_AGENTS = Number(env('BENCH_REPLICA_AGENTS', '12'));
const PARTS = env('BENCH_REPLICA_PARTS', 'latency,throughput,kill').split(',');
const LATENCY_PATHS = env('BENCH_REPLICA_LATENCY', 'same,cross,floor').split(',');
// dist/index.js → the package → its dist/bin.js, as `runt-control-plane` runs it.
const CP_BIN =
  process.env.BENCH_REPLICA_CP_BIN ??
  join(dirname(dirname(fileURLToPath(import.meta.resolve('@runt/control-plane')))), 'dist', 'bin.js');
const AGENT_BIN = agentBin();
const adminToken = mintToken('admin');
const TRACE_DIR = process.env.BENCH_TRACE ? mkdtempSync(join(tmpdir(), 'runt-bench-trace-')) : undefined;
const children = new Set<ChildProcess>();

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

interface Replica {
  id: string;
  url: string;
  proc: ChildProcess;
  admin: ControlPlaneClient;
  /** The last of what it wrote to stderr. */
  said: () => string;
}

async function startReplicas(db: BenchDatabase, n: number): Promise<Replica[]> {
  const out: Replica[] = [];
  for (let i = 0; i < n; i++) {
    const port = await freePort();
    const id = `cp${i + 1}`;
    const proc = spawn(process.execPath, [CP_BIN], {
      env: {
        ...process.env,
        DATABASE_URL: db.url,
        RUNT_ADMIN_TOKEN: adminToken,
        RUNT_HOST: '127.0.0.1',
        RUNT_PORT: String(port),
        RUNT_DATA_DIR: mkdtempSync(join(tmpdir(), `runt-bench-${id}-`)),
        RUNT_REPLICA_ID: id,
        RUNT_LOG_LEVEL: 'warn',
        ...(TRACE_DIR ? { RUNT_TRACE_FILE: join(TRACE_DIR, `${id}.trace`) } : {}),
      },
      // stderr kept (its last 2 KB): what a replica that exits before it is ready said
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const said = stderrTail(proc);
    children.add(proc);
    proc.once('exit', () => children.delete(proc));
    const url = `http://127.0.0.1:${port}`;
    out.push({
      id,
      url,
      proc,
      admin: new ControlPlaneClient({ url, token: adminToken, retries: 0, nodeHttp: NODE_HTTP }),
      said,
    });
  }
  for (const r of out) await waitReady(r.proc, r.url, r.id, r.said);
  return out;
}

function stopReplicas(replicas: Replica[]): Promise<void> {
  return stopProcesses(replicas.map((r) => r.proc));
}

async function pair(via: Replica, name: string): Promise<{ workstationId: string; token: string }> {
  const { pairing } = await via.admin.mintPairingCode();
  const res = await fetch(`${via.url}/api/workstations/pairing-codes/redeem`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ code: pairing.code, display_name: name }),
  });
  const r = (await res.json()) as { workstation: { id: string }; credential: { token: string } };
  return { workstationId: r.workstation.id, token: r.credential.token };
}

/** An agent link double: registers, reports every offer (with its arrival time) to `onOffer`. */
async function linkDouble(
  replica: Replica,
  name: string,
  runtime: string,
  maxRuns: number,
  onOffer: (run: Run, at: number, client: ControlPlaneClient) => void,
  retries = 0,
): Promise<WebSocket> {
  const { token } = await pair(replica, name);
  const ws = new WebSocket(`${replica.url.replace(/^http/, 'ws')}/api/agent/link`, {
    headers: { authorization: `Bearer ${token}` },
    perMessageDeflate: false,
  });
  // The claim and the status report go over the link as runt-agent sends them (its `linkVia`):
  // each a `request` answered by its `reply`, the HTTP answer it stands for.
  const replies = new Map<string, (m: ControlReplyMessage) => void>();
  let nextRequest = 0;
  const via: TransportVia = async (req) => {
    const call = linkRequestOf(req);
    if (!call || ws.readyState !== WebSocket.OPEN) return undefined;
    const id = `q${nextRequest++}`;
    const reply = await new Promise<ControlReplyMessage>((resolve) => {
      replies.set(id, resolve);
      ws.send(JSON.stringify({ type: 'request', id, op: call.op, target: call.target, body: call.body }));
    });
    return jsonAnswer(reply.status, reply.status < 300 ? reply.result : { error: reply.error });
  };
  const client = new ControlPlaneClient({
    url: replica.url,
    token,
    retries,
    nodeHttp: NODE_HTTP,
    ...(FINISH_OVER_LINK ? { via } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('error', reject);
    ws.on('close', () => {
      for (const [id, r] of replies)
        r({ type: 'reply', id, status: 503, error: { code: 'unavailable', message: 'link closed' } });
      replies.clear();
    });
    ws.on('message', (data) => {
      const at = nowMs();
      const m = JSON.parse((data as Buffer).toString('utf8')) as { type: string; run?: Run; id?: string };
      if (m.type === 'registered') resolve();
      else if (m.type === 'offer' && m.run) onOffer(m.run, at, client);
      else if (m.type === 'reply') {
        replies.get(m.id!)?.(m as ControlReplyMessage);
        replies.delete(m.id!);
      } else if (m.type === 'ping') ws.send(JSON.stringify({ type: 'result', id: m.id, ok: true }));
    });
    ws.once('open', () =>
      ws.send(
        JSON.stringify({
          type: 'register',
          workstation: {
            display_name: name,
            cpu_count: maxRuns,
            max_runs: maxRuns,
            runtimes: [runtime],
            agent_version: 'bench',
            listening: true,
          },
          running_run_ids: [],
        }),
      ),
    );
  });
  return ws;
}

async function finishRun(client: ControlPlaneClient, run: Run): Promise<void> {
  const claim = await client.claimRun(run.id, { runner_id: 'bench', lease_ms: 30_000 });
  await client.reportStatus(run.id, {
    fencing_token: claim.fencing_token,
    status: 'completed',
    exit_code: 0,
  });
}

/** One way from a submit to an offer, sampled one run at a time: runt's (`runtPath`) or its floor. */
interface OfferPath {
  /** Pids of the processes in A's and B's places (the same on one replica). */
  pids: { a: number; b: number };
  /** Submit → offer received → run finished; the offer's and the submit answer's ms after the submit was sent. */
  sample(): Promise<{ id: string; sent: number; offerMs: number; answeredMs: number }>;
  close(): Promise<void>;
}

interface LatencyResult {
  p50: number;
  p99: number;
  max: number;
  answered: number;
  /** Per run, offer received minus submit answered (negative: the offer came first), p50. */
  afterAnswer: number;
  load: number;
  /** CPU ms per sample (the warm-up's excluded) of A's and B's processes, the database's server processes, the bench. */
  cpu: { a: number; b: number; db: number; bench: number };
  /** Per sampled run: submit sent, answer received, offer received (for BENCH_TRACE). */
  stamps: Map<string, { sent: number; answer: number; offer: number }>;
}

/** Submit on `on` → offer received over a link double held by `held`, which then claims and reports it. */
async function runtPath(on: Replica, held: Replica): Promise<OfferPath> {
  const runtime = `lat${Math.random().toString(36).slice(2, 8)}`;
  const waiting = new Map<string, (at: number) => void>();
  const early = new Map<string, number>();
  let agentClient: ControlPlaneClient | undefined;
  const ws = await linkDouble(held, 'latency-box', runtime, 4, (run, at, client) => {
    agentClient = client;
    const w = waiting.get(run.id);
    if (w) w(at);
    else early.set(run.id, at);
  });
  return {
    pids: { a: on.proc.pid!, b: held.proc.pid! },
    async sample() {
      const sent = nowMs();
      const { run } = await on.admin.submitRun({ runtime, command: ['x'] });
      const answeredMs = nowMs() - sent;
      const at = early.get(run.id) ?? (await new Promise<number>((resolve) => waiting.set(run.id, resolve)));
      waiting.delete(run.id);
      early.delete(run.id);
      await finishRun(agentClient!, run);
      return { id: run.id, sent, offerMs: at - sent, answeredMs };
    },
    async close() {
      ws.close();
    },
  };
}

/**
 * Samples each path `runs` times, sequentially, after WARMUP untimed samples of each (they warm
 * the connections and the JIT: see BENCH_REPLICA_WARMUP). Several paths take turns in blocks of
 * `block` samples (each after BLOCK_SETTLE untimed ones), so each is measured over the same
 * minutes of the machine (whose speed moves by the minute here: docs/benchmarks.md); each
 * block's CPU is its path's.
 */
async function measureLatency(
  db: BenchDatabase,
  paths: OfferPath[],
  runs: number,
  block: number,
): Promise<LatencyResult[]> {
  for (const p of paths)
    for (let i = 0; i < WARMUP; i++) {
      await p.sample();
      if (GAP_MS > 0) await sleep(GAP_MS);
    }
  const acc = paths.map(() => ({
    samples: [] as number[],
    answers: [] as number[],
    stamps: new Map<string, { sent: number; answer: number; offer: number }>(),
    cpu: { a: 0, b: 0, db: 0, bench: 0 },
  }));
  for (let done = 0; done < runs; done += block) {
    const n = Math.min(block, runs - done);
    for (const [k, p] of paths.entries()) {
      const a = acc[k]!;
      // A path's first samples after the other's turn wake processes idle for that turn (the
      // first ~3× its median here, the second ~1.3×): untimed, so each path is measured back to
      // back as it is alone, not with one cold sample per block in its tail.
      if (paths.length > 1)
        for (let i = 0; i < BLOCK_SETTLE; i++) {
          await p.sample();
          if (GAP_MS > 0) await sleep(GAP_MS);
        }
      const before = await cpuNow(db, p.pids);
      for (let i = 0; i < n; i++) {
        const s = await p.sample();
        a.samples.push(s.offerMs);
        a.answers.push(s.answeredMs);
        if (TRACE_DIR)
          a.stamps.set(s.id, { sent: s.sent, answer: s.sent + s.answeredMs, offer: s.sent + s.offerMs });
        if (GAP_MS > 0) await sleep(GAP_MS);
      }
      const used = cpuUsed(before, await cpuNow(db, p.pids));
      for (const key of ['a', 'b', 'db', 'bench'] as const) a.cpu[key] += used[key];
    }
  }
  const load = loadAverage();
  return acc.map((a) => ({
    p50: percentile(a.samples, 50),
    p99: percentile(a.samples, 99),
    max: Math.max(...a.samples),
    answered: percentile(a.answers, 50),
    afterAnswer: percentile(
      a.samples.map((x, i) => x - a.answers[i]!),
      50,
    ),
    load,
    cpu: { a: a.cpu.a / runs, b: a.cpu.b / runs, db: a.cpu.db / runs, bench: a.cpu.bench / runs },
    stamps: a.stamps,
  }));
}

/** The per-step trace of runt's samples (BENCH_TRACE), once the replicas wrote it. */
async function traceOf(on: Replica, held: Replica, r: LatencyResult): Promise<void> {
  await sleep(500); // the replicas write their traces every 200 ms
  printTrace(on === held ? 'same replica' : 'submit on A, link on B', r.stamps, [on.id, held.id]);
  if (process.env.BENCH_TRACE_DUMP)
    writeFileSync(
      `${process.env.BENCH_TRACE_DUMP}.${on === held ? 'same' : 'cross'}.json`,
      JSON.stringify({ dir: TRACE_DIR, on: on.id, held: held.id, stamps: [...r.stamps] }),
    );
}

type CpuReading = Awaited<ReturnType<typeof cpuNow>>;

/**
 * CPU seconds so far of the processes in A's and B's places, of each server process of the
 * bench's database, and of this process — read before (`benchFrom`) and after (`benchTo`) the
 * query that lists those server processes, so a window between two readings leaves that query's
 * own CPU out.
 */
async function cpuNow(db: BenchDatabase, pids: { a: number; b: number }) {
  const u0 = process.cpuUsage();
  const backends = await db.backendPids();
  const u1 = process.cpuUsage();
  return {
    a: processCpuSeconds(pids.a),
    b: processCpuSeconds(pids.b),
    db: new Map(backends.map((pid) => [pid, processCpuSeconds(pid)])),
    benchFrom: (u0.user + u0.system) / 1e6,
    benchTo: (u1.user + u1.system) / 1e6,
  };
}

/** CPU ms used between two readings (the database's: every backend seen at the end). */
function cpuUsed(from: CpuReading, to: CpuReading) {
  let dbCpu = 0;
  for (const [pid, s] of to.db) dbCpu += s - (from.db.get(pid) ?? 0);
  return {
    a: (to.a - from.a) * 1000,
    b: (to.b - from.b) * 1000,
    db: dbCpu * 1000,
    bench: (to.benchFrom - from.benchTo) * 1000,
  };
}

/**
 * The replicas' per-step trace of the sampled runs: for each step, the median, p90 and p99 of
 * its first time after the bench sent the submit, in order; `B:` marks the replica holding the
 * link. Then the same medians over the slowest 2 % of the samples only (by offer received), so
 * the tail's step shows.
 */
function printTrace(
  label: string,
  stamps: Map<string, { sent: number; answer: number; offer: number }>,
  replicaIds: string[],
): void {
  const perRun = new Map<string, Map<string, number>>(); // run → step → ms after sent
  const add = (run: string, step: string, ms: number) => {
    let m = perRun.get(run);
    if (!m) perRun.set(run, (m = new Map()));
    if (!m.has(step)) m.set(step, ms);
  };
  // The sweeps (start, end) of the replicas on the path: periodic work beside it.
  const sweeps: Array<[number, number]> = [];
  for (const [i, id] of [...new Set(replicaIds)].entries()) {
    const file = join(TRACE_DIR!, `${id}.trace`);
    if (!existsSync(file)) continue;
    const prefix = replicaIds.length > 1 && replicaIds[0] !== replicaIds[1] ? (i === 0 ? 'A ' : 'B ') : '';
    let sweepStart: number | undefined;
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const [t, step, run] = line.split(' ');
      if (run === 'sweep') {
        if (step === 'sweep.start') sweepStart = Number(t);
        else if (sweepStart !== undefined) {
          sweeps.push([sweepStart, Number(t)]);
          sweepStart = undefined;
        }
        continue;
      }
      if (!run || !stamps.has(run)) continue;
      add(run, prefix + step!, Number(t) - stamps.get(run)!.sent);
    }
  }
  for (const [run, s] of stamps) {
    add(run, 'bench: answer received', s.answer - s.sent);
    add(run, 'bench: offer received', s.offer - s.sent);
  }
  const table = (runs: string[]) => {
    const byStep = new Map<string, number[]>();
    for (const run of runs)
      for (const [step, ms] of perRun.get(run) ?? []) {
        const xs = byStep.get(step);
        if (xs) xs.push(ms);
        else byStep.set(step, [ms]);
      }
    const rows = [...byStep].map(([step, xs]) => ({
      step,
      p50: percentile(xs, 50),
      p90: percentile(xs, 90),
      p99: percentile(xs, 99),
      n: xs.length,
    }));
    rows.sort((a, b) => a.p50 - b.p50);
    for (const r of rows)
      console.log(
        `  ${r.step.padEnd(28)} ${r.p50.toFixed(3).padStart(8)} ${r.p90.toFixed(3).padStart(8)} ${r.p99.toFixed(3).padStart(8)}  (n=${r.n})`,
      );
  };
  console.log(`trace (${label}): ms after the submit was sent, p50 / p90 / p99 over the sampled runs`);
  table([...stamps.keys()]);
  const slow = [...stamps].sort((a, b) => b[1].offer - b[1].sent - (a[1].offer - a[1].sent));
  console.log(`trace (${label}), the slowest 2 % of the samples only: p50 / p90 / p99`);
  table(slow.slice(0, Math.max(1, Math.ceil(slow.length / 50))).map(([run]) => run));
  // Samples whose window (submit sent → offer received) one of those sweeps overlapped.
  const overlapped = (xs: typeof slow) =>
    xs.filter(([, s]) => sweeps.some(([a, b]) => a < s.offer && b > s.sent)).length;
  const worst = slow.slice(0, Math.max(1, Math.ceil(slow.length / 100)));
  console.log(
    `  sweeps: ${sweeps.length}, median ${percentile(
      sweeps.map(([a, b]) => b - a),
      50,
    ).toFixed(
      2,
    )} ms; overlapped ${overlapped(slow)} of ${slow.length} samples, ${overlapped(worst)} of the slowest ${worst.length}`,
  );
}

/**
 * Runs per second with `n` replicas: 6 link doubles spread over them, submits round-robin, 16 in
 * flight. The doubles claim and finish over HTTP with retries (a refused or dropped call under
 * load is retried, as the agent does), and a run whose finish still fails is counted and
 * reported, not waited for. Which replica's doubles ran how many runs is printed too: a
 * scheduler that places every replica's runs onto the same few workstations (ties go to the
 * lowest id) loads one replica's links only.
 */
async function throughput(
  n: number,
  runs: number,
): Promise<{ perSecond: number; seconds: number; load: number; failed: number; perReplica: number[] }> {
  const db = await createBenchDatabase(`replicas${n}`);
  const replicas = await startReplicas(db, n);
  const runtime = 'tp';
  let completed = 0;
  let failed = 0;
  const perReplica = replicas.map(() => 0);
  let allDone: () => void = () => {};
  const done = new Promise<void>((r) => (allDone = r));
  const links: WebSocket[] = [];
  try {
    for (let i = 0; i < 6; i++) {
      links.push(
        await linkDouble(
          replicas[i % n]!,
          `tp-${i}`,
          runtime,
          8,
          (run, _at, client) => {
            perReplica[i % n]!++;
            void finishRun(client, run).then(
              () => {
                if (++completed + failed === runs) allDone();
              },
              (e: unknown) => {
                console.error(`replicas  finish of ${run.id} failed: ${(e as Error).message}`);
                if (completed + ++failed === runs) allDone();
              },
            );
          },
          3,
        ),
      );
    }
    const t0 = nowMs();
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < runs) {
          const i = next++;
          await replicas[i % n]!.admin.submitRun({ runtime, command: ['x'] });
        }
      }),
    );
    await Promise.race([
      done,
      sleep(300_000).then(() =>
        Promise.reject(new Error(`only ${completed}/${runs} completed (${failed} finishes failed)`)),
      ),
    ]);
    const seconds = (nowMs() - t0) / 1000;
    return { perSecond: completed / seconds, seconds, load: loadAverage(), failed, perReplica };
  } finally {
    for (const l of links) l.close();
    await stopReplicas(replicas);
    await db.drop();
  }
}

/** Real agents on 3 replicas; one replica SIGKILLed: time until all of its agents hold a link on another. */
async function killRecovery(agents: number): Promise<{ agents: number; ms: number; load: number }> {
  const db = await createBenchDatabase('replicakill');
  const replicas = await startReplicas(db, 3);
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  const procs: ChildProcess[] = [];
  try {
    const urls = replicas.map((r) => r.url);
    for (let i = 0; i < agents; i++) {
      const { workstationId, token } = await pair(replicas[i % 3]!, `kill-${i}`);
      const root = mkdtempSync(join(tmpdir(), `runt-bench-kill-${i}-`));
      const proc = spawn(
        process.execPath,
        [AGENT_BIN, '--runtime', 'fake', '--state-dir', join(root, 'state'), '--shutdown-grace-ms', '0'],
        {
          env: {
            ...process.env,
            XDG_CONFIG_HOME: join(root, 'config'),
            RUNT_CLOUD_URL: [...urls.slice(i % 3), ...urls.slice(0, i % 3)].join(','),
            RUNT_CLOUD_TOKEN: token,
            RUNT_WORKSTATION_ID: workstationId,
            RUNT_LOG_LEVEL: 'warn',
          },
          stdio: ['ignore', 'ignore', 'ignore'],
        },
      );
      procs.push(proc);
      children.add(proc);
      proc.once('exit', () => children.delete(proc));
    }
    const holders = async () =>
      new Map(
        (
          await c.query<{ id: string; link_replica: string }>(
            `select id, link_replica from workstations where link_state = 'connected' and listening and link_replica is not null`,
          )
        ).rows.map((r) => [r.id, r.link_replica]),
      );
    for (const deadline = Date.now() + 120_000; (await holders()).size < agents; await sleep(100)) {
      if (Date.now() > deadline) throw new Error('the agents did not all link');
    }
    const victim = replicas[1]!;
    const orphans = [...(await holders())].filter(([, r]) => r === victim.id).map(([w]) => w);
    const t0 = nowMs();
    victim.proc.kill('SIGKILL');
    for (const deadline = Date.now() + 60_000; ; await sleep(10)) {
      const now = await holders();
      if (orphans.every((w) => now.has(w) && now.get(w) !== victim.id)) break;
      if (Date.now() > deadline) throw new Error('the agents of the killed replica did not re-link');
    }
    return { agents: orphans.length, ms: nowMs() - t0, load: loadAverage() };
  } finally {
    await stopProcesses(procs);
    await c.end();
    await stopReplicas(replicas);
    await db.drop();
  }
}

async function main(): Promise<void> {
  const f = (x: number) => x.toFixed(2);
  if (PARTS.includes('latency')) {
    const db = await createBenchDatabase('replicalat');
    const replicas = await startReplicas(db, 2);
    // Started with the replicas, so each measurement runs beside the other's idle processes.
    let floor: NotifyFloor | undefined;
    try {
      if (LATENCY_PATHS.includes('floor')) floor = await startNotifyFloor(db.url);
      for (let n = 0; n < BACKLOG; n += 1000)
        await replicas[0]!.admin.submitRuns({
          runs: Array.from({ length: Math.min(1000, BACKLOG - n) }, () => ({
            runtime: 'nobody-offers-this',
            command: ['x'],
          })),
        });
      const cpuText = (r: LatencyResult, cross: boolean) =>
        `cpu/sample ${cross ? `A ${f(r.cpu.a)} B ${f(r.cpu.b)}` : `replica ${f(r.cpu.a)}`} db ${f(r.cpu.db)} bench ${f(r.cpu.bench)} ms`;
      if (LATENCY_PATHS.includes('same')) {
        const path = await runtPath(replicas[1]!, replicas[1]!);
        const [same] = await measureLatency(db, [path], LATENCY_RUNS, LATENCY_RUNS).finally(() =>
          path.close(),
        );
        console.log(
          `replicas  offer latency, submit and link on the same replica: p50 ${f(same!.p50)} ms p99 ${f(same!.p99)} ms max ${f(same!.max)} ms (${LATENCY_RUNS} runs; submit answered p50 ${f(same!.answered)} ms, offer − answer p50 ${f(same!.afterAnswer)} ms; ${cpuText(same!, false)})  load ${same!.load}`,
        );
        if (TRACE_DIR) await traceOf(replicas[1]!, replicas[1]!, same!);
      }
      const cross = LATENCY_PATHS.includes('cross') ? await runtPath(replicas[0]!, replicas[1]!) : undefined;
      try {
        const paths = [cross, floor].filter((p): p is OfferPath => p !== undefined);
        const both = paths.length === 2;
        const results =
          paths.length > 0
            ? await measureLatency(db, paths, LATENCY_RUNS, both ? FLOOR_BLOCK : LATENCY_RUNS)
            : [];
        const turns = (other: string) =>
          both ? ` taking turns with ${other} in blocks of ${FLOOR_BLOCK}` : '';
        const c = cross ? results[0] : undefined;
        const bare = floor ? results[results.length - 1] : undefined;
        if (c)
          console.log(
            `replicas  offer latency, submit on A, agent linked to B:        p50 ${f(c.p50)} ms p99 ${f(c.p99)} ms max ${f(c.max)} ms (${LATENCY_RUNS} runs${turns('the floor')}; submit answered p50 ${f(c.answered)} ms, offer − answer p50 ${f(c.afterAnswer)} ms; ${cpuText(c, true)})  load ${c.load}`,
          );
        if (bare)
          console.log(
            `replicas  offer latency floor, the same hops without runt:      p50 ${f(bare.p50)} ms p99 ${f(bare.p99)} ms max ${f(bare.max)} ms (${LATENCY_RUNS} runs${turns('runt')}; submit answered p50 ${f(bare.answered)} ms; ${cpuText(bare, true)})  load ${bare.load}`,
          );
        if (c && bare)
          console.log(
            `replicas  cross-replica offer ÷ its floor: p50 ${f(c.p50 / bare.p50)}× p99 ${f(c.p99 / bare.p99)}× (runt − floor: p50 ${f(c.p50 - bare.p50)} ms, p99 ${f(c.p99 - bare.p99)} ms; CPU per sample ${f((c.cpu.a + c.cpu.b + c.cpu.db + c.cpu.bench) / (bare.cpu.a + bare.cpu.b + bare.cpu.db + bare.cpu.bench))}×)`,
          );
        if (c && TRACE_DIR) await traceOf(replicas[0]!, replicas[1]!, c);
      } finally {
        await cross?.close();
      }
    } finally {
      await floor?.close();
      await stopReplicas(replicas);
      await db.drop();
    }
  }
  if (PARTS.includes('throughput')) {
    for (const n of [1, 2, 3]) {
      const t = await throughput(n, THROUGHPUT_RUNS);
      console.log(
        `replicas  throughput with ${n} replica(s), 6 link doubles, submits round-robin: ${t.perSecond.toFixed(0)} runs/s (${THROUGHPUT_RUNS} in ${f(t.seconds)} s, ${t.failed} finishes failed; runs on each replica's doubles ${t.perReplica.join('/')})  load ${t.load}`,
      );
    }
  }
  if (PARTS.includes('kill')) {
    const k = await killRecovery(KILL_AGENTS);
    console.log(
      `replicas  SIGKILL of 1 of 3 replicas: its ${k.agents} agents (of ${KILL_AGENTS} real runt agents) linked to another after ${k.ms.toFixed(0)} ms  load ${k.load}`,
    );
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : String(e));
    for (const c of children) c.kill('SIGKILL');
    process.exit(1);
  },
);
