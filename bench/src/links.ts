// Links (issue 9): idle agent links' memory, and a control-plane restart with every agent
// linking again. The control plane is the bench's cp-host (startControlPlane as
// `runt-control-plane`) in its own process, started through `sh -c 'ulimit -n <hard>'` so it may
// hold as many sockets as the machine allows; the agents are link doubles in child processes,
// each link the agent's own `LinkClient` (same upgrade, `register` message and jittered-backoff
// reconnect loop as runt-agent). Workstations and their credentials are inserted in bulk (bench
// set-up, not measured); every link still passes the upgrade's credential check.
//
//   BENCH_LINKS=20000                links (capped below the process's hard fd limit, see below)
//   BENCH_LINK_HOSTS=4               child processes holding the link doubles
//   BENCH_BACKENDS=postgres,pglite   BENCH_LINK_RESTART=kill|term (how the control plane goes down)
//   BENCH_TIMEOUT_MS=60000           how long the links may take to open / to come back
//   BENCH_CPU_PROF=DIR               --cpu-prof of each control plane process into DIR
//   BENCH_HEAP_SNAPSHOT=DIR          a heap snapshot of the control plane holding the idle links
//   BENCH_LINKS_PER_SOURCE=2000      links dialled from each loopback source address (127.0.0.x)
//
// Why several source addresses: every connection here goes from 127.0.0.1 to one port, and
// Linux finds each `connect()` its ephemeral port by walking the range (32768–60999 here) past
// the ports in use; from ~8,000 connections on, that walk cost 3–10 ms of kernel CPU per dial
// (measured: 19,000 connects from one address 3.2 ms of system CPU each on average, 60 s in
// all, against tens of µs from several), charged to the link doubles — a cost of the bench
// holding 20,000 links on one host, not of agents on their own machines. So the doubles dial
// from 127.0.0.1, 127.0.0.2, …, each address holding at most BENCH_LINKS_PER_SOURCE links.
import { spawn, fork, type ChildProcess } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hashToken, mintToken } from '@runt/transport-auth';
import type { CpCounts, CpHostConfig, CpHostRequest } from './cp-host.js';
import { cpuProfDir } from './cpu-profile-top.js';
import type { DoubleLink, LinkDoublesCount, LinkDoublesRequest, PollTally } from './link-doubles.js';
import { createBenchDatabase, type BenchDatabase } from './postgres-server.js';
import { CpuMeter, processCpuSeconds } from './proc-cpu.js';
import { loadAverage, nowMs, percentile, sleep } from './stats.js';

const env = (name: string, fallback: string) => process.env[name] ?? fallback;

/** The hard RLIMIT_NOFILE of this process (what `ulimit -n` may raise the soft limit to). */
export function hardFdLimit(): number {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  const hard = line?.trim().split(/\s+/)[4];
  return hard === undefined || hard === 'unlimited' ? Number.POSITIVE_INFINITY : Number(hard);
}

/** What one backend's links measurement found. */
export interface LinksMeasurement {
  backend: 'postgres' | 'pglite';
  links: number;
  /** First open of every link on a fresh control plane. */
  open: { seconds: number; perSecond: number; load: number; startSeconds: number };
  /** Idle links' cost: control plane RSS and JS memory (heap + external) after a full GC, per link. */
  memory: { rssBytesPerLink: number; heapBytesPerLink: number; rssMiB: number; load: number };
  /** After the restart: every link registered again (`link_connected_at`), from the new process's ready. */
  restart: {
    how: 'kill' | 'term';
    /** From the signal to the old process's exit. */
    stopSeconds: number;
    /** From the signal to the new process's ready. */
    downSeconds: number;
    linked: number;
    within20s: number;
    seconds: number;
    perSecond: number;
    p50Ms: number;
    p99Ms: number;
    cpMsCpuPerLink: number;
    dbMsCpuPerLink: number;
    sqlPerLink: number;
    /** The statements of the restart window, most frequent first. */
    sqlMix: string[];
    failedAttempts: number;
    /** Agents whose link came back after runt-agent would have started polling over HTTP, and those polls (the doubles do not send them). */
    wouldPoll: PollTally & { unheld: PollTally };
    /** The control plane's event-loop delay over the restart window (ms). */
    eventLoop: { p99Ms: number; maxMs: number };
    load: number;
  };
}

class Cp {
  private seq = 0;
  private readonly pending = new Map<number, (m: Record<string, unknown>) => void>();
  private constructor(
    readonly child: ChildProcess,
    readonly url: string,
  ) {
    child.on('message', (m: { id?: number } & Record<string, unknown>) => {
      if (m.id === undefined) return;
      this.pending.get(m.id)?.(m);
      this.pending.delete(m.id);
    });
  }

  /** cp-host with the soft fd limit raised to the hard one (`ulimit -n`), and --expose-gc. */
  static async start(config: CpHostConfig): Promise<Cp> {
    const host = fileURLToPath(new URL('../dist/cp-host.js', import.meta.url));
    const profDir = cpuProfDir();
    const child = spawn(
      '/bin/sh',
      [
        '-c',
        'ulimit -n "$(ulimit -Hn)" && exec "$0" --expose-gc "$@"',
        process.execPath,
        ...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []),
        host,
      ],
      {
        env: { ...process.env, BENCH_CP: JSON.stringify(config) },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      },
    );
    const ready = await new Promise<{ url: string }>((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (code) => reject(new Error(`control plane exited (${code})`)));
    });
    return new Cp(child, ready.url);
  }

  ask(req: CpHostRequest): Promise<Record<string, unknown>> {
    const id = ++this.seq;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.child.send({ ...req, id });
    });
  }

  async sql<T>(sql: string, params?: unknown[]): Promise<T[]> {
    const r = await this.ask({ type: 'query', sql, ...(params ? { params } : {}) });
    if (typeof r.error === 'string') throw new Error(r.error);
    return r.rows as T[];
  }

  async memory(): Promise<NodeJS.MemoryUsage> {
    return (await this.ask({ type: 'memory' })).memory as NodeJS.MemoryUsage;
  }

  async stop(signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill(signal);
    const force = setTimeout(() => this.child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(force);
  }
}

/**
 * The link doubles' nice value (BENCH_DOUBLES_NICE, default 10). 20,000 agents run on 20,000
 * machines; here 4 processes of doubles share 2 cores with the control plane, and at even value
 * they took 4/5 of the bench's CPU (each as much as the control plane), so the control plane got
 * through its accept queue too slowly: SYNs dropped, every handshake past the agents' 10 s
 * timeout, retried, and none opened (0 of 19,800 in 60 s). Niced, they run when the control
 * plane has nothing to do — what the control plane can do is what is measured.
 */
const DOUBLES_NICE = Number(env('BENCH_DOUBLES_NICE', '10'));

class Doubles {
  private waiting: ((c: LinkDoublesCount) => void)[] = [];
  private constructor(readonly child: ChildProcess) {
    child.on('message', (m: { type: string }) => {
      if (m.type === 'count') this.waiting.shift()?.(m as LinkDoublesCount);
    });
  }
  static async start(): Promise<Doubles> {
    const child = fork(new URL('../dist/link-doubles.js', import.meta.url), [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    // The doubles stand in for agents on their own machines: they yield the CPU to the control
    // plane and its database (see DOUBLES_NICE).
    setPriority(child.pid!, DOUBLES_NICE);
    await new Promise((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (code) => reject(new Error(`link doubles exited (${code})`)));
    });
    return new Doubles(child);
  }
  send(m: LinkDoublesRequest): void {
    this.child.send(m);
  }
  count(): Promise<LinkDoublesCount> {
    return new Promise((r) => {
      this.waiting.push(r);
      this.send({ type: 'count' });
    });
  }
  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.send({ type: 'close' });
    const force = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(force);
  }
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Inserts `n` workstations, each with a workstation credential; returns their ids and tokens. */
async function seed(cp: Cp, n: number): Promise<DoubleLink[]> {
  const sources = Math.ceil(n / Number(env('BENCH_LINKS_PER_SOURCE', '2000')));
  const out: DoubleLink[] = [];
  for (let i = 0; i < n; i += 1000) {
    const ids: string[] = [];
    const creds: string[] = [];
    const hashes: string[] = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) {
      const token = mintToken('workstation');
      const workstationId = `ws_bench_link_${j}`;
      ids.push(workstationId);
      creds.push(`cred_bench_link_${j}`);
      hashes.push(hashToken(token));
      out.push({ token, workstationId, localAddress: `127.0.0.${1 + (j % sources)}` });
    }
    await cp.sql(
      `insert into workstations (id, display_name) select id, 'bench-link' from unnest($1::text[]) as t(id)`,
      [ids],
    );
    await cp.sql(
      `insert into credentials (id, kind, token_hash, workstation_id)
         select c, 'workstation', h, w from unnest($1::text[], $2::text[], $3::text[]) as t(c, h, w)`,
      [creds, hashes, ids],
    );
  }
  return out;
}

async function countUp(doubles: Doubles[]): Promise<{
  up: number;
  failures: number;
  why: string;
  wouldPoll: LinksMeasurement['restart']['wouldPoll'];
}> {
  const counts = await Promise.all(doubles.map((d) => d.count()));
  const why: Record<string, number> = {};
  for (const c of counts) for (const [k, n] of Object.entries(c.why)) why[k] = (why[k] ?? 0) + n;
  return {
    up: counts.reduce((s, c) => s + c.up, 0),
    failures: counts.reduce((s, c) => s + c.failures, 0),
    wouldPoll: {
      agents: counts.reduce((s, c) => s + c.wouldPoll.agents, 0),
      polls: counts.reduce((s, c) => s + c.wouldPoll.polls, 0),
      beforeHint: counts.reduce((s, c) => s + c.wouldPoll.beforeHint, 0),
      unheld: {
        agents: counts.reduce((s, c) => s + c.wouldPoll.unheld.agents, 0),
        polls: counts.reduce((s, c) => s + c.wouldPoll.unheld.polls, 0),
        beforeHint: counts.reduce((s, c) => s + c.wouldPoll.unheld.beforeHint, 0),
      },
    },
    why: Object.entries(why)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${n}× ${k}`)
      .join('; '),
  };
}

/**
 * One backend: open `links` links, measure the idle cost, restart the control plane
 * (SIGKILL by default) and time every link registering again.
 */
export async function measureLinks(o: {
  backend: 'postgres' | 'pglite';
  links: number;
  hosts: number;
  restart: 'kill' | 'term';
  timeoutMs: number;
}): Promise<LinksMeasurement> {
  const root = mkdtempSync(join(tmpdir(), 'runt-bench-links-'));
  let db: BenchDatabase | undefined;
  let cp: Cp | undefined;
  const doubles: Doubles[] = [];
  try {
    db = o.backend === 'postgres' ? await createBenchDatabase('links') : undefined;
    const config: CpHostConfig = {
      backend: o.backend,
      dataDir: join(root, 'cp'),
      port: await freePort(),
      adminToken: mintToken('admin'),
      ...(db ? { url: db.url } : {}),
    };
    const startedAt = nowMs();
    cp = await Cp.start(config);
    const startSeconds = (nowMs() - startedAt) / 1000;
    const creds = await seed(cp, o.links);
    for (let i = 0; i < o.hosts; i++) doubles.push(await Doubles.start());
    const before = await cp.memory();
    await sleep(500);
    const openLoad = loadAverage();
    await cp.ask({ type: 'counts' }); // the event-loop delay from here on
    const t0 = nowMs();
    doubles.forEach((d, i) =>
      d.send({
        type: 'open',
        url: cp!.url,
        links: creds.filter((_, j) => j % o.hosts === i),
      }),
    );
    const registered = async (since: string) =>
      (
        await cp!.sql<{ n: number }>(
          `select count(*)::int as n from workstations where link_state = 'connected' and link_connected_at >= $1::timestamptz`,
          [since],
        )
      )[0]!.n;
    const epoch = '1970-01-01T00:00:00Z';
    let traced = Date.now();
    for (const deadline = Date.now() + o.timeoutMs; ;) {
      const n = await registered(epoch);
      if (n >= o.links) break;
      if (process.env.BENCH_TRACE && Date.now() - traced >= 2000) {
        traced = Date.now();
        // Asked together: starved doubles may answer seconds after the database does.
        const asked = nowMs();
        const [c, again] = await Promise.all([countUp(doubles), registered(epoch)]);
        const answeredS = ((nowMs() - asked) / 1000).toFixed(1);
        const loop = ((await cp.ask({ type: 'counts' })).counts as CpCounts).eventLoop;
        process.stderr.write(
          `links: ${((nowMs() - t0) / 1000).toFixed(1)} s: ${n}→${again} registered, ${c.up} up (the doubles answered in ${answeredS} s), ${c.failures} failed attempts (${c.why}), event loop p99 ${loop?.p99Ms.toFixed(0)} ms max ${loop?.maxMs.toFixed(0)} ms, load ${loadAverage()}\n`,
        );
      }
      if (Date.now() > deadline)
        throw new Error(
          `only ${await registered(epoch)} of ${o.links} links registered in ${o.timeoutMs} ms`,
        );
      await sleep(100);
    }
    const openSeconds = (nowMs() - t0) / 1000;
    // Idle: let the start-up garbage settle, then a full GC on both readings.
    await sleep(3000);
    const memLoad = loadAverage();
    const after = await cp.memory();
    // BENCH_HEAP_SNAPSHOT=DIR: what the idle links' JS memory is made of (a V8 heap snapshot).
    if (process.env.BENCH_HEAP_SNAPSHOT)
      await cp.ask({
        type: 'heap-snapshot',
        file: join(process.env.BENCH_HEAP_SNAPSHOT, `links-${o.backend}-${o.links}.heapsnapshot`),
      });
    const js = (m: NodeJS.MemoryUsage) => m.heapUsed + m.external;

    // The restart: down (SIGKILL or SIGTERM), up again on the same port and data, all links back.
    const downAt = nowMs();
    await cp.stop(o.restart === 'kill' ? 'SIGKILL' : 'SIGTERM');
    const stopSeconds = (nowMs() - downAt) / 1000;
    const restartLoad = loadAverage();
    cp = await Cp.start(config);
    const downSeconds = (nowMs() - downAt) / 1000;
    const [{ t: readyAt, ms: readyMs }] = (await cp.sql<{ t: string; ms: number }>(
      `select now()::text as t, extract(epoch from now()) * 1000 as ms`,
    )) as [{ t: string; ms: number }];
    const cpu0 = processCpuSeconds(cp.child.pid!);
    const dbCpu = new CpuMeter();
    dbCpu.start(db ? await db.backendPids() : []);
    const counts0 = (await cp.ask({ type: 'counts' })).counts as CpCounts;
    const { failures: failures0, wouldPoll: wouldPoll0 } = await countUp(doubles);
    traced = Date.now();
    for (const deadline = Date.now() + o.timeoutMs; ;) {
      const n = await registered(readyAt);
      if (n >= o.links || Date.now() > deadline) break;
      if (process.env.BENCH_TRACE && Date.now() - traced >= 2000) {
        traced = Date.now();
        const c = await countUp(doubles);
        process.stderr.write(
          `links restart: ${((nowMs() - downAt) / 1000).toFixed(1)} s after the signal: ${n} registered, ${c.up} up, ${c.failures - failures0} failed attempts (all since the start: ${c.why}), load ${loadAverage()}\n`,
        );
      }
      await sleep(100);
    }
    // The shell exec'd node, so the pid is the control plane's own.
    const cpuSeconds = processCpuSeconds(cp.child.pid!) - cpu0;
    const counts1 = (await cp.ask({ type: 'counts' })).counts as CpCounts;
    const statements = counts1.statements - counts0.statements;
    const mix = Object.entries(counts1.byStatement)
      .map(([k, n]) => [k, n - (counts0.byStatement[k] ?? 0)] as const)
      .filter(([, n]) => n > 0)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 8);
    if (db) dbCpu.sample(await db.backendPids());
    const times = (
      await cp.sql<{ ms: number }>(
        `select extract(epoch from link_connected_at) * 1000 - $2::float8 as ms from workstations
          where link_state = 'connected' and link_connected_at >= $1::timestamptz`,
        [readyAt, Number(readyMs)],
      )
    ).map((r) => Number(r.ms));
    const last = Math.max(...times);
    // Where the restart's time goes: links registered in each second from ready.
    if (process.env.BENCH_TRACE) {
      const perSecond: number[] = [];
      for (const t of times) {
        const s = Math.max(0, Math.floor(t / 1000));
        perSecond[s] = (perSecond[s] ?? 0) + 1;
      }
      process.stderr.write(
        `links restart: registered per second from ready: ${Array.from(perSecond, (n) => n ?? 0).join(' ')}\n`,
      );
    }
    const { failures, wouldPoll } = await countUp(doubles);
    return {
      backend: o.backend,
      links: o.links,
      open: { seconds: openSeconds, perSecond: o.links / openSeconds, load: openLoad, startSeconds },
      memory: {
        rssBytesPerLink: (after.rss - before.rss) / o.links,
        heapBytesPerLink: (js(after) - js(before)) / o.links,
        rssMiB: after.rss / 2 ** 20,
        load: memLoad,
      },
      restart: {
        how: o.restart,
        stopSeconds,
        downSeconds,
        linked: times.length,
        within20s: times.filter((t) => t <= 20_000).length,
        seconds: last / 1000,
        perSecond: times.length / (last / 1000),
        p50Ms: percentile(times, 50),
        p99Ms: percentile(times, 99),
        cpMsCpuPerLink: (cpuSeconds * 1000) / Math.max(1, times.length),
        dbMsCpuPerLink: (dbCpu.seconds() * 1000) / Math.max(1, times.length),
        sqlPerLink: statements / Math.max(1, times.length),
        sqlMix: mix.map(([k, n]) => `${n}× ${k}`),
        failedAttempts: failures - failures0,
        wouldPoll: {
          agents: wouldPoll.agents - wouldPoll0.agents,
          polls: wouldPoll.polls - wouldPoll0.polls,
          beforeHint: wouldPoll.beforeHint - wouldPoll0.beforeHint,
          unheld: {
            agents: wouldPoll.unheld.agents - wouldPoll0.unheld.agents,
            polls: wouldPoll.unheld.polls - wouldPoll0.unheld.polls,
            beforeHint: wouldPoll.unheld.beforeHint - wouldPoll0.unheld.beforeHint,
          },
        },
        eventLoop: counts1.eventLoop ?? { p99Ms: NaN, maxMs: NaN },
        load: restartLoad,
      },
    };
  } finally {
    await Promise.all(doubles.map((d) => d.close()));
    await cp?.stop('SIGTERM');
    await db?.drop();
    rmSync(root, { recursive: true, force: true });
  }
}

const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');

/** One line per figure, for the bench's output. */
export function describeLinks(m: LinksMeasurement): string[] {
  const r = m.restart;
  return [
    `${m.backend.padEnd(8)} links  control plane up in ${f(m.open.startSeconds, 2)} s; first open of ${m.links} links: ${f(m.open.seconds, 2)} s, ${f(m.open.perSecond, 0)} links/s  load ${m.open.load}`,
    `${m.backend.padEnd(8)} links  ${m.links} idle links: ${f(m.memory.rssBytesPerLink / 1024, 2)} KiB RSS per link, ${f(m.memory.heapBytesPerLink / 1024, 2)} KiB JS (heap + external) per link, control plane RSS ${f(m.memory.rssMiB, 0)} MiB  load ${m.memory.load}`,
    `${m.backend.padEnd(8)} links  restart (${r.how === 'kill' ? 'SIGKILL' : 'SIGTERM'}: exited after ${f(r.stopSeconds, 2)} s, new one ready ${f(r.downSeconds, 2)} s after the signal): ${r.linked}/${m.links} linked again in ${f(r.seconds, 2)} s from ready, ${f(r.perSecond, 0)} links/s, ${r.within20s} within 20 s, p50 ${f(r.p50Ms / 1000, 2)} s p99 ${f(r.p99Ms / 1000, 2)} s, CPU per link cp ${f(r.cpMsCpuPerLink, 2)} ms + db ${f(r.dbMsCpuPerLink, 2)} ms, ${f(r.sqlPerLink, 2)} SQL statements per link, ${r.failedAttempts} failed attempts, ${r.wouldPoll.agents} agents would have polled over HTTP meanwhile (${r.wouldPoll.polls} polls, ${r.wouldPoll.beforeHint} of them before a first Retry-After; the doubles do not; without the shed hold ${r.wouldPoll.unheld.agents} agents, ${r.wouldPoll.unheld.polls} polls, ${r.wouldPoll.unheld.beforeHint} before a first Retry-After), event-loop delay p99 ${f(r.eventLoop.p99Ms, 0)} ms max ${f(r.eventLoop.maxMs, 0)} ms  load ${r.load}`,
    `${m.backend.padEnd(8)} links  restart SQL: ${r.sqlMix.join('; ')}`,
  ];
}

/** The hard fd limit leaves room for the control plane's own files, database and listening sockets. */
export function linksToMeasure(): number {
  const wanted = Number(env('BENCH_LINKS', '20000'));
  return Math.min(wanted, hardFdLimit() - 200);
}
