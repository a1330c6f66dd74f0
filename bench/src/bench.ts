// `pnpm bench` in bench/: runt beside its peers on the same Postgres server and on PGlite, in one
// sitting, interleaved per backend (peers' drains → runt's drain, burst and paced run → the
// peers' paced runs → links), then the ratios against the issue's targets and one markdown table
// of every figure with the load average beside it. Loopback only, bounded: every measurement
// stops after BENCH_TIMEOUT_MS; it ends only the processes it started.
//
//   BENCH_QUICK=1 (or --quick)  development sizes: 1,000 runs, 250 paced, 2,000 links
//   BENCH_RUNS=10000            backlog / burst size (quick: 1000)
//   BENCH_PACED_RUNS=1000       jobs in the paced run (quick: 250), at BENCH_RATE=50 per second
//   BENCH_LINKS=20000           idle links and links re-opened after a restart (quick: 2000;
//                               capped below the hard fd limit, see links-bench.ts)
//   BENCH_ROUNDS=1              rounds of the whole interleaved sequence
//   BENCH_AGENTS=2              runt agents: each a `runt workstation run --runtime fake` process
//   BENCH_MAX_RUNS=25           run slots of each agent (--max-runs): 50 runs at once by default;
//                               BENCH_AGENTS=50 BENCH_MAX_RUNS=4 is the 50-process layout
//   BENCH_PREFETCH=25           runs each agent takes ahead of a free slot (--prefetch; default:
//                               BENCH_MAX_RUNS, runt's fastest mode as graphile-worker's local queue
//                               is its; 0: none, the agent's own default)
//   BENCH_RUNS_PGLITE, BENCH_PACED_RUNS_PGLITE, BENCH_LINKS_PGLITE   sizes for PGlite alone
//                               (default: the same as on Postgres)
//   BENCH_BACKENDS=postgres,pglite   BENCH_SYSTEMS=raw,graphile,pgboss,runt,links
//   BENCH_MODES=drain,paced     (drain = drain and burst)
//   BENCH_RUNT_PHASES=drain     runt's phases alone (drain, burst, burst-batch, paced; default: those
//                               of BENCH_MODES). burst: one POST /api/runs per run, 50 in flight;
//                               burst-batch: POST /api/runs/batch of 1,000, 2 in flight. Both are
//                               divided by raw's and graphile-worker's drains (backlog inserted
//                               before the clock starts) and bursts (raw: one insert per statement;
//                               graphile-worker: addJobs of 1,000, 2 in flight; while they drain)
//   BENCH_WARMUP=N              untimed warm-up per system before its timed phases (default: a
//                               fifth of BENCH_RUNS, 2,000 at the issue's size, 200 quick; 0: none):
//                               runt's runs through its agents (then waited until all finished),
//                               each peer's jobs through its own workers in its measuring process
//                               (graphile-worker: a runner of the same config, stopped after)
//   BENCH_SUBMIT_HTTP=node      the bench's submits over the client's keep-alive node:http
//                               transport (default), or `fetch` (~4x the bench's CPU per submit)
//   BENCH_CPU_PROF=DIR          --cpu-prof of the control plane and of one agent into DIR
//   BENCH_AGENT_NODE_ARGS='--heap-prof --heap-prof-dir=DIR'   extra Node flags (split on spaces)
//                               for every agent process, e.g. `--cpu-prof --cpu-prof-dir=DIR
//                               --cpu-prof-interval=200` (each profile named by Node, with its pid)
//   BENCH_AGENT_ODD_NODE_ARGS='--v8-pool-size=1'   Node flags for the odd-numbered agents instead
//                               (agent 1 of 2): two sets of flags side by side in one phase
//   BENCH_CP_NODE_ARGS='--trace-gc'   extra Node flags for the control plane's process (split on spaces)
//   BENCH_PG_SETTLE=checkpoint  on Postgres, a CHECKPOINT and 0.5 s quiet right before every measured
//                               phase of every system (default; `none`: left out), and after each a line
//                               of what the server did in it: checkpoints, WAL and its full-page images
//                               per job, a CPU probe of the machine (postgres-server.ts ServerWindow)
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { cpuProfDir, cpuProfileTop } from './cpu-profile-top.js';
import { describeLinks, linksToMeasure, measureLinks, type LinksMeasurement } from './links.js';
import { measurePeer, type PeerMeasurement } from './measure-peer.js';
import type { PeerTask } from './peer-host.js';
import { describeServerPhase, serverState } from './postgres-server.js';
import { describeCounts, describeStragglers } from './run-counts.js';
import { RuntSystem, type RuntMeasurement } from './runt-system.js';
import { loadAverage, percentile } from './stats.js';

const QUICK = process.env.BENCH_QUICK === '1' || process.argv.includes('--quick');
const env = (name: string, full: string, quick = full) => process.env[name] ?? (QUICK ? quick : full);
const RUNS = Number(env('BENCH_RUNS', '10000', '1000'));
const PACED_RUNS = Number(env('BENCH_PACED_RUNS', '1000', '250'));
const RATE = Number(env('BENCH_RATE', '50'));
const ROUNDS = Number(env('BENCH_ROUNDS', '1'));
const BACKENDS = env('BENCH_BACKENDS', 'postgres,pglite').split(',') as Array<'postgres' | 'pglite'>;
const SYSTEMS = env('BENCH_SYSTEMS', 'raw,graphile,pgboss,runt,links').split(',');
const AGENTS = Number(env('BENCH_AGENTS', '2'));
const MAX_RUNS = Number(env('BENCH_MAX_RUNS', '25'));
const PREFETCH = Number(env('BENCH_PREFETCH', String(MAX_RUNS)));
if (!process.env.BENCH_LINKS) process.env.BENCH_LINKS = QUICK ? '2000' : '20000';
const LINKS = linksToMeasure();
/** A size, or its PGlite override (`BENCH_RUNS_PGLITE` …). */
const sized = (backend: 'postgres' | 'pglite', name: string, value: number) =>
  backend === 'pglite' && process.env[`${name}_PGLITE`] ? Number(process.env[`${name}_PGLITE`]) : value;
const CPU_PROF = cpuProfDir();
const AGENT_NODE_ARGS = (process.env.BENCH_AGENT_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
const ODD_AGENT_NODE_ARGS = process.env.BENCH_AGENT_ODD_NODE_ARGS?.split(' ').filter((a) => a !== '');
const CP_NODE_ARGS = (process.env.BENCH_CP_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
const MODES = env('BENCH_MODES', 'drain,paced').split(',');
/** Untimed warm-up runs/jobs per system on a backend: BENCH_WARMUP, or a fifth of its BENCH_RUNS. */
const warmupFor = (backend: 'postgres' | 'pglite') =>
  process.env.BENCH_WARMUP !== undefined
    ? Number(process.env.BENCH_WARMUP)
    : Math.round(sized(backend, 'BENCH_RUNS', RUNS) / 5);
if (process.env.BENCH_WARMUP !== undefined && !/^\d+$/.test(process.env.BENCH_WARMUP)) {
  console.error(
    `BENCH_WARMUP: a whole number of runs (0: none), not ${JSON.stringify(process.env.BENCH_WARMUP)}`,
  );
  process.exit(2);
}
const TIMEOUT_MS = Number(env('BENCH_TIMEOUT_MS', '900000', '180000'));
/** runt's phases: those of BENCH_MODES (drain = drain and burst), or BENCH_RUNT_PHASES (e.g. `drain` alone). */
const RUNT_PHASES = process.env.BENCH_RUNT_PHASES
  ? process.env.BENCH_RUNT_PHASES.split(',')
  : MODES.flatMap((m) => (m === 'drain' ? ['drain', 'burst', 'burst-batch'] : [m]));

const PEER_LABEL: Record<string, string> = {
  raw: 'raw SKIP LOCKED (4 conns, unbatched)',
  graphile: 'graphile-worker 0.17 (c16, local queue 10, batched completion)',
  pgboss: 'pg-boss 10.4 (batches of 10)',
};
/**
 * A peer task's label: on PGlite the raw peer runs twice, its commits synced (as runt's) and
 * unsynced (the CPU ceiling issue 9's PGlite target was set against; docs/benchmarks.md).
 */
const peerLabel = (t: Pick<PeerTask, 'peer' | 'backend' | 'unsynced'>) =>
  t.backend === 'pglite' && t.peer === 'raw'
    ? `${PEER_LABEL.raw!}, commits ${t.unsynced ? 'unsynced' : 'synced'}`
    : PEER_LABEL[t.peer]!;
const f = (x: number | undefined, digits = 1) =>
  x !== undefined && Number.isFinite(x) ? x.toFixed(digits) : '-';
const RUNT_LABEL = `runt (${AGENTS} agent processes × ${MAX_RUNS} slots${PREFETCH > 0 ? ` + ${PREFETCH} prefetch` : ''}, fake runtime)`;

function describe(m: PeerMeasurement): string {
  const head = `${m.task.backend.padEnd(8)} ${m.task.mode.padEnd(5)} ${peerLabel(m.task).padEnd(62)}`;
  const cpu = `cpu/job ${f(m.cpuMsPerJob.total, 2)} ms (worker ${f(m.cpuMsPerJob.worker, 2)}, db ${f(m.cpuMsPerJob.database, 2)} (kernel ${f(m.cpuMsPerJob.databaseSystem, 2)}))`;
  const server = m.server
    ? `\n${' '.repeat(15)}${describeServerPhase(m.server, (m.drain ?? m.paced)!.jobs)}`
    : '';
  if (m.drain)
    return `${head} ${f(m.drain.perSecond, 0).padStart(6)} jobs/s  ${m.drain.completed}/${m.drain.jobs} in ${f(m.drain.seconds, 2)} s  ${cpu}  load ${m.load}${server}`;
  return `${head} enqueue→start p50 ${f(m.paced!.p50)} ms p99 ${f(m.paced!.p99)} ms  ${m.paced!.started}/${m.paced!.jobs} at ${m.paced!.rate}/s  ${cpu}  load ${m.load}${server}`;
}

const results: PeerMeasurement[] = [];
const runt: RuntMeasurement[] = [];
const links: LinksMeasurement[] = [];

async function peer(task: Omit<PeerTask, 'url' | 'dataDir'>): Promise<void> {
  try {
    const warmup = warmupFor(task.backend);
    const m = await measurePeer({ ...task, ...(warmup > 0 ? { warmup } : {}) }, TIMEOUT_MS);
    results.push(m);
    const w = m.warmup;
    console.log(
      `${task.backend.padEnd(8)} ${task.mode.padEnd(5)} ${peerLabel(task)} warm-up: ` +
        (w
          ? `${w.completed}/${w.jobs} jobs in ${f(w.seconds, 2)} s, ${w.how} (untimed, in no figure)`
          : 'none'),
    );
    console.log(describe(m));
  } catch (e) {
    console.log(
      `${task.backend.padEnd(8)} ${task.mode.padEnd(5)} ${peerLabel(task).padEnd(62)} failed: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
}

function describeRunt(m: RuntMeasurement): string {
  const c = m.cpuMsPerRun;
  const p = m.perRun;
  return (
    `${m.backend.padEnd(8)} ${m.phase.padEnd(5)} ${RUNT_LABEL.padEnd(62)} ` +
    (m.phase === 'paced'
      ? `submit→accepted p50 ${f(m.acceptedP50)} ms p99 ${f(m.acceptedP99)} ms at ${m.rate}/s`
      : `${f(m.runsPerSecond, 0).padStart(6)} runs/s`) +
    `  ${m.finished}/${m.runs} in ${f(m.seconds, 2)} s  cpu/run ${f(c.total, 2)} ms (cp ${f(c.controlPlane, 2)}, agents ${f(c.agents, 2)} (main thread ${f(c.agentsMainThread, 2)}), db ${f(c.database, 2)} (kernel ${f(c.databaseSystem, 2)}))` +
    `  per run: http ${f(p.http, 2)} (agents ${f(p.agentHttp, 2)}), link msgs ${f(p.linkMessages, 2)} (requests ${f(p.linkRequests, 2)}), sql ${f(p.sql, 2)} (round trips ${f(p.sqlRoundTrips, 2)}), cp write syscalls ${f(p.cpWrites, 2)}, offers ${f(p.offers, 2)} (messages ${f(p.offerMessages, 2)}), requeues ${f(p.requeues, 2)}` +
    (m.submitSeconds !== undefined
      ? `  (${m.phase === 'drain' ? 'backlog ' : ''}submitted in ${f(m.submitSeconds, 1)} s${m.backlog !== undefined ? `, ${m.backlog} open at the start` : ''}${m.submitterCpuMsPerRun !== undefined ? `, submitter ${f(m.submitterCpuMsPerRun, 2)} ms CPU/run` : ''}${m.submitCpMsPerRun !== undefined ? `, cp ${f(m.submitCpMsPerRun, 3)} ms CPU/submit` : ''})`
      : '') +
    `  load ${m.load}\n${' '.repeat(15)}in all: re-queues ${describeCounts(m.counts.requeues)}, offers ${m.counts.offers ?? '-'} for ${m.finished} runs` +
    (m.server ? `\n${' '.repeat(15)}${describeServerPhase(m.server, m.finished, 'run')}` : '') +
    (m.stragglers ? `\n${' '.repeat(15)}${describeStragglers(m.stragglers, m.stragglers.startMs)}` : '') +
    `\n${' '.repeat(15)}sql per run: ${m.sqlMix.join('; ')}`
  );
}

async function runtPhases(backend: 'postgres' | 'pglite'): Promise<void> {
  let system: RuntSystem | undefined;
  try {
    const t0 = Date.now();
    system = await RuntSystem.start({
      backend,
      agents: AGENTS,
      maxRuns: MAX_RUNS,
      prefetch: PREFETCH,
      ...(CPU_PROF ? { cpuProfDir: CPU_PROF } : {}),
      ...(AGENT_NODE_ARGS.length > 0 ? { agentNodeArgs: AGENT_NODE_ARGS } : {}),
      ...(ODD_AGENT_NODE_ARGS ? { oddAgentNodeArgs: ODD_AGENT_NODE_ARGS } : {}),
      ...(CP_NODE_ARGS.length > 0 ? { cpNodeArgs: CP_NODE_ARGS } : {}),
      submitHttp: process.env.BENCH_SUBMIT_HTTP === 'fetch' ? 'fetch' : 'node',
    });
    console.log(
      `${backend.padEnd(8)} runt: control plane + ${AGENTS} agent processes up and linked in ${((Date.now() - t0) / 1000).toFixed(1)} s, load ${loadAverage()}`,
    );
    const warmup = warmupFor(backend);
    if (warmup > 0) {
      const w = await system.warmUp(warmup, TIMEOUT_MS);
      console.log(
        `${backend.padEnd(8)} runt warm-up: ${w.finished}/${w.runs} runs in ${f(w.seconds, 2)} s through the agents (half POST /api/runs, half /api/runs/batch, while they run; all finished before the first phase; untimed, in no figure)`,
      );
    } else console.log(`${backend.padEnd(8)} runt warm-up: none`);
    for (const phase of RUNT_PHASES) {
      const m =
        phase === 'drain'
          ? await system.drain(sized(backend, 'BENCH_RUNS', RUNS), TIMEOUT_MS)
          : phase === 'burst' || phase === 'burst-batch'
            ? await system.burst(
                sized(backend, 'BENCH_RUNS', RUNS),
                TIMEOUT_MS,
                phase === 'burst' ? 'single' : 'batch',
              )
            : await system.paced(RATE, sized(backend, 'BENCH_PACED_RUNS', PACED_RUNS), TIMEOUT_MS);
      runt.push(m);
      console.log(describeRunt(m));
    }
  } catch (e) {
    console.log(`${backend.padEnd(8)} runt failed: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    await system?.close();
  }
}

async function linkPhases(backend: 'postgres' | 'pglite'): Promise<void> {
  try {
    const m = await measureLinks({
      backend,
      links: sized(backend, 'BENCH_LINKS', LINKS),
      hosts: Number(env('BENCH_LINK_HOSTS', '4')),
      restart: env('BENCH_LINK_RESTART', 'kill') as 'kill' | 'term',
      timeoutMs: Math.min(TIMEOUT_MS, 300_000),
    });
    links.push(m);
    for (const line of describeLinks(m)) console.log(line);
  } catch (e) {
    console.log(`${backend.padEnd(8)} links failed: ${e instanceof Error ? e.message : String(e)}`);
  }
}

console.log(
  `runt bench${QUICK ? ' (quick)' : ''}: backlog/burst ${RUNS}, paced ${PACED_RUNS} at ${RATE}/s, ${AGENTS} agents × ${MAX_RUNS} slots${PREFETCH > 0 ? ` + ${PREFETCH} prefetch` : ''}, ${LINKS} links, ${ROUNDS} round(s), load ${loadAverage()}`,
);
for (let round = 0; round < ROUNDS; round++) {
  for (const backend of BACKENDS) {
    if (backend === 'postgres') console.log(await serverState());
    const peers = SYSTEMS.filter((s) => s in PEER_LABEL && (s === 'raw' || backend === 'postgres'));
    // On PGlite the raw peer synced, then unsynced (see peerLabel).
    const rawVariants = backend === 'pglite' ? [false, true] : [false];
    const jobs = sized(backend, 'BENCH_RUNS', RUNS);
    if (MODES.includes('drain'))
      for (const p of peers)
        for (const unsynced of p === 'raw' ? rawVariants : [false])
          await peer({
            peer: p as PeerTask['peer'],
            backend,
            mode: 'drain',
            jobs,
            ...(unsynced ? { unsynced } : {}),
          });
    // The bursts of raw (one insert per statement) and graphile-worker (addJobs of 1,000, 2 in
    // flight), inserted while their workers run, beside their drains.
    if (RUNT_PHASES.some((x) => x.startsWith('burst')))
      for (const p of peers.filter((x) => x === 'raw' || x === 'graphile'))
        for (const unsynced of p === 'raw' ? rawVariants : [false])
          await peer({ peer: p, backend, mode: 'burst', jobs, ...(unsynced ? { unsynced } : {}) });
    if (SYSTEMS.includes('runt')) await runtPhases(backend);
    if (MODES.includes('paced'))
      for (const p of peers.filter((x) => x !== 'raw'))
        await peer({
          peer: p as PeerTask['peer'],
          backend,
          mode: 'paced',
          jobs: sized(backend, 'BENCH_PACED_RUNS', PACED_RUNS),
          rate: RATE,
        });
    if (SYSTEMS.includes('links')) await linkPhases(backend);
  }
}

// Ratios: runt against every peer measured on the same backend (medians over rounds), and the targets.
const median = (xs: number[]) => percentile(xs, 50);
const TARGET: Record<string, number> = { raw: 1.0, graphile: 1.0, pgboss: Number.NaN };
console.log('\nratios (runt ÷ peer; medians over rounds; issue 9 targets in brackets):');
for (const backend of BACKENDS) {
  for (const phase of ['drain', 'burst', 'burst-batch'] as const) {
    const r = runt.filter((m) => m.backend === backend && m.phase === phase);
    if (r.length === 0) continue;
    const rps = median(r.map((m) => m.runsPerSecond));
    const cpu = median(r.map((m) => m.cpuMsPerRun.total));
    console.log(
      `${backend.padEnd(8)} ${phase.padEnd(5)} runt ${f(rps, 0)} runs/s, CPU ${f(cpu, 2)} ms per run [≤ 2.5 ms]`,
    );
    // Every runt phase against each peer's drain (its backlog inserted before its clock starts);
    // a burst also against raw's and graphile-worker's bursts (inserted while they drain, like runt's).
    for (const [p, mode] of [
      ['raw', 'drain'],
      ['raw', 'burst'],
      ['graphile', 'drain'],
      ['graphile', 'burst'],
      ['pgboss', 'drain'],
    ] as const) {
      if (mode === 'burst' && phase === 'drain') continue;
      for (const unsynced of [false, true]) {
        const peers = results.filter(
          (m) =>
            m.task.backend === backend &&
            m.task.peer === p &&
            m.task.mode === mode &&
            (m.task.unsynced ?? false) === unsynced &&
            m.drain,
        );
        if (peers.length === 0) continue;
        const prps = median(peers.map((m) => m.drain!.perSecond));
        const pcpu = median(peers.map((m) => m.cpuMsPerJob.total));
        const rawPglite = backend === 'pglite' && p === 'raw';
        // Issue 9's PGlite target (≥ 0.5×) was set against a raw peer whose commits never reached
        // the disk: it is taken against the unsynced one. The synced raw peer commits each claim,
        // complete and insert on its own, so it waits for the disk 2–3 times per job where runt
        // syncs once per group commit: that ratio measures the disk, not runt's CPU overhead.
        const target = rawPglite ? (unsynced ? 0.5 : Number.NaN) : TARGET[p]!;
        const note = !rawPglite
          ? ''
          : unsynced
            ? ' (the CPU ceiling: the ratio issue 9 means)'
            : ' (raw waits for the disk at every commit, runt once per group commit: measures the disk)';
        console.log(
          `${backend.padEnd(8)} ${phase.padEnd(5)} runt ÷ ${`${peerLabel({ peer: p, backend, unsynced })} ${mode}`.padEnd(68)} runs/s ${f(rps / prps, 3)}${Number.isNaN(target) ? '' : ` [≥ ${target.toFixed(1)}]`}${note}  cpu/run ${f(cpu / pcpu, 1)}×  (${f(rps, 0)} vs ${f(prps, 0)}/s; ${f(cpu, 2)} vs ${f(pcpu, 2)} ms)`,
        );
      }
    }
  }
  const paced = runt.filter((m) => m.backend === backend && m.phase === 'paced');
  const gw = results.filter((m) => m.task.peer === 'graphile' && m.paced);
  if (paced.length > 0) {
    const p50 = median(paced.map((m) => m.acceptedP50));
    const p99 = median(paced.map((m) => m.acceptedP99));
    const g50 = median(gw.map((m) => m.paced!.p50));
    const g99 = median(gw.map((m) => m.paced!.p99));
    console.log(
      `${backend.padEnd(8)} paced runt submit→accepted p50 ${f(p50)} ms [≤ 5] p99 ${f(p99)} ms [≤ 25]; ÷ graphile-worker enqueue→start (Postgres, ${f(g50)}/${f(g99)} ms): p50 ${f(p50 / g50, 2)}, p99 ${f(p99 / g99, 2)}`,
    );
  }
  for (const l of links.filter((m) => m.backend === backend))
    console.log(
      `${backend.padEnd(8)} links ${f(l.memory.rssBytesPerLink / 1024, 2)} KiB RSS per idle link [≤ 16 KiB]; restart: ${f(l.restart.perSecond, 0)} links/s [≥ 1,000], ${l.restart.within20s}/${l.links} within 20 s [all]`,
    );
}

// Every figure in one markdown table, for docs/benchmarks.md.
const rows: string[] = [];
const row = (...cells: string[]) => rows.push(`| ${cells.join(' | ')} |`);
for (const m of results) {
  const what = m.drain
    ? `${f(m.drain.perSecond, 0)} jobs/s`
    : `enqueue→start p50 ${f(m.paced!.p50)} ms, p99 ${f(m.paced!.p99)} ms`;
  row(
    m.task.backend,
    peerLabel(m.task),
    m.drain ? `${m.task.mode} ${m.task.jobs}` : `paced ${m.task.jobs} at ${m.task.rate}/s`,
    what,
    `${f(m.cpuMsPerJob.total, 2)} = ${f(m.cpuMsPerJob.worker, 2)} + ${f(m.cpuMsPerJob.database, 2)}`,
    '–',
    String(m.load),
  );
}
for (const m of runt) {
  const p = m.perRun;
  row(
    m.backend,
    RUNT_LABEL,
    m.phase === 'paced' ? `paced ${m.runs} at ${m.rate}/s` : `${m.phase} ${m.runs}`,
    m.phase === 'paced'
      ? `submit→accepted p50 ${f(m.acceptedP50)} ms, p99 ${f(m.acceptedP99)} ms`
      : `${f(m.runsPerSecond, 0)} runs/s`,
    `${f(m.cpuMsPerRun.total, 2)} = ${f(m.cpuMsPerRun.controlPlane, 2)} + ${f(m.cpuMsPerRun.agents, 2)} + ${f(m.cpuMsPerRun.database, 2)}`,
    `${f(p.http, 2)} (${f(p.agentHttp, 2)}) / ${f(p.linkMessages, 2)} (${f(p.linkRequests, 2)}) / ${f(p.sql, 2)} / ${f(p.offers, 2)} (${f(p.offerMessages, 2)}) / ${f(p.requeues, 2)}`,
    String(m.load),
  );
}
for (const l of links) {
  row(
    l.backend,
    'links',
    `${l.links} idle`,
    `${f(l.memory.rssBytesPerLink / 1024, 2)} KiB RSS, ${f(l.memory.heapBytesPerLink / 1024, 2)} KiB JS per link`,
    '–',
    '–',
    String(l.memory.load),
  );
  row(
    l.backend,
    'links',
    `restart (${l.restart.how === 'kill' ? 'SIGKILL' : 'SIGTERM'}), ${l.links} re-link`,
    `${f(l.restart.perSecond, 0)} links/s, ${l.restart.within20s} within 20 s, p50 ${f(l.restart.p50Ms / 1000, 2)} s, p99 ${f(l.restart.p99Ms / 1000, 2)} s (new process ready ${f(l.restart.downSeconds, 1)} s after the signal)`,
    `${f(l.restart.cpMsCpuPerLink + l.restart.dbMsCpuPerLink, 2)} per link = ${f(l.restart.cpMsCpuPerLink, 2)} + – + ${f(l.restart.dbMsCpuPerLink, 2)}`,
    `– / – / ${f(l.restart.sqlPerLink, 2)} / – / –`,
    String(l.restart.load),
  );
}
console.log(
  `\n| backend | system | phase | figure | CPU per run/job (ms): total = cp or worker + agents + db | HTTP (agents) / link msgs (requests) / SQL / offers (messages) / re-queues per run | load |\n| --- | --- | --- | --- | --- | --- | --- |`,
);
for (const r of rows) console.log(r);
console.log(`load average at the end: ${loadAverage()}`);
if (CPU_PROF) {
  for (const file of readdirSync(CPU_PROF).filter((x) => x.endsWith('.cpuprofile'))) {
    console.log(`\n${file} — top self time:\n| self % | function | where |\n|---|---|---|`);
    for (const e of cpuProfileTop(join(CPU_PROF, file), 15))
      console.log(`| ${e.selfPercent.toFixed(1)} | \`${e.name}\` | ${e.where} |`);
  }
}
if (process.env.BENCH_JSON) console.log(JSON.stringify({ peers: results, runt, links }));
