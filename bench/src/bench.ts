// `pnpm bench` in bench/: runt beside its peers on the same Postgres server and on PGlite, in one
// sitting, interleaved (each round runs every system once, in turn). Loopback only, bounded:
// every measurement stops after BENCH_TIMEOUT_MS; it ends only the processes it started.
//
//   BENCH_RUNS=2000          backlog size per drain (the issue's size: 10000)
//   BENCH_PACED_RUNS=250     jobs in the paced run (the issue's: 1000), at BENCH_RATE=50 per second
//   BENCH_ROUNDS=1           rounds of the whole interleaved sequence
//   BENCH_AGENTS=50          runt agents, each a `runt workstation run --runtime fake` process
//   BENCH_BACKENDS=postgres,pglite   BENCH_SYSTEMS=raw,graphile,pgboss,runt   BENCH_MODES=drain,paced
//   BENCH_CPU_PROF=DIR       --cpu-prof of the control plane and of one agent into DIR
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { cpuProfileTop } from './cpu-profile-top.js';
import { measurePeer, type PeerMeasurement } from './measure-peer.js';
import type { PeerTask } from './peer-host.js';
import { RuntSystem, type RuntMeasurement } from './runt-system.js';
import { loadAverage, percentile } from './stats.js';

const env = (name: string, fallback: string) => process.env[name] ?? fallback;
const RUNS = Number(env('BENCH_RUNS', '2000'));
const PACED_RUNS = Number(env('BENCH_PACED_RUNS', '250'));
const RATE = Number(env('BENCH_RATE', '50'));
const ROUNDS = Number(env('BENCH_ROUNDS', '1'));
const BACKENDS = env('BENCH_BACKENDS', 'postgres,pglite').split(',') as Array<'postgres' | 'pglite'>;
const SYSTEMS = env('BENCH_SYSTEMS', 'raw,graphile,pgboss,runt').split(',');
const AGENTS = Number(env('BENCH_AGENTS', '50'));
// A directory: write --cpu-prof profiles of the control plane and of the first agent there.
const CPU_PROF = process.env.BENCH_CPU_PROF;
const MODES = env('BENCH_MODES', 'drain,paced').split(',');
const TIMEOUT_MS = Number(env('BENCH_TIMEOUT_MS', '180000'));

const PEER_LABEL: Record<string, string> = {
  raw: 'raw SKIP LOCKED (4 conns, unbatched)',
  graphile: 'graphile-worker 0.17 (c16, local queue 10, batched completion)',
  pgboss: 'pg-boss 10.4 (batches of 10)',
};
const f = (x: number | undefined, digits = 1) =>
  x !== undefined && Number.isFinite(x) ? x.toFixed(digits) : '-';

function describe(m: PeerMeasurement): string {
  const head = `${m.task.backend.padEnd(8)} ${m.task.mode.padEnd(5)} ${PEER_LABEL[m.task.peer]!.padEnd(62)}`;
  const cpu = `cpu/job ${f(m.cpuMsPerJob.total, 2)} ms (worker ${f(m.cpuMsPerJob.worker, 2)}, db ${f(m.cpuMsPerJob.database, 2)})`;
  if (m.drain)
    return `${head} ${f(m.drain.perSecond, 0).padStart(6)} jobs/s  ${m.drain.completed}/${m.drain.jobs} in ${f(m.drain.seconds, 2)} s  ${cpu}  load ${m.load}`;
  return `${head} enqueue→start p50 ${f(m.paced!.p50)} ms p99 ${f(m.paced!.p99)} ms  ${m.paced!.started}/${m.paced!.jobs} at ${m.paced!.rate}/s  ${cpu}  load ${m.load}`;
}

const results: PeerMeasurement[] = [];
const runt: RuntMeasurement[] = [];

async function peer(task: Omit<PeerTask, 'url' | 'dataDir'>): Promise<void> {
  try {
    const m = await measurePeer(task, TIMEOUT_MS);
    results.push(m);
    console.log(describe(m));
  } catch (e) {
    console.log(
      `${task.backend.padEnd(8)} ${task.mode.padEnd(5)} ${PEER_LABEL[task.peer]!.padEnd(62)} failed: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
}

function describeRunt(m: RuntMeasurement): string {
  const c = m.cpuMsPerRun;
  const p = m.perRun;
  return (
    `${m.backend.padEnd(8)} ${m.phase.padEnd(5)} ${`runt (${m.agents} agents, ${m.agents} processes, fake runtime)`.padEnd(62)} ` +
    (m.phase === 'paced'
      ? `submit→accepted p50 ${f(m.acceptedP50)} ms p99 ${f(m.acceptedP99)} ms at ${m.rate}/s`
      : `${f(m.runsPerSecond, 0).padStart(6)} runs/s`) +
    `  ${m.finished}/${m.runs} in ${f(m.seconds, 2)} s  cpu/run ${f(c.total, 2)} ms (cp ${f(c.controlPlane, 2)}, agents ${f(c.agents, 2)}, db ${f(c.database, 2)})` +
    `  per run: http ${f(p.http, 2)}, link msgs ${f(p.linkMessages, 2)}, sql ${f(p.sql, 2)}, offers ${f(p.offers, 2)}, requeues ${f(p.requeues, 2)}` +
    (m.submitSeconds !== undefined ? `  (backlog submitted in ${f(m.submitSeconds, 1)} s)` : '') +
    `  load ${m.load}`
  );
}

async function runtPhases(backend: 'postgres' | 'pglite'): Promise<void> {
  let system: RuntSystem | undefined;
  try {
    const t0 = Date.now();
    system = await RuntSystem.start({
      backend,
      agents: AGENTS,
      ...(CPU_PROF ? { cpuProfDir: CPU_PROF } : {}),
    });
    console.log(
      `${backend.padEnd(8)} runt: control plane + ${AGENTS} agent processes up and linked in ${((Date.now() - t0) / 1000).toFixed(1)} s, load ${loadAverage()}`,
    );
    for (const phase of MODES.flatMap((m) => (m === 'drain' ? ['drain', 'burst'] : [m]))) {
      const m =
        phase === 'drain'
          ? await system.drain(RUNS, TIMEOUT_MS)
          : phase === 'burst'
            ? await system.burst(RUNS, TIMEOUT_MS)
            : await system.paced(RATE, PACED_RUNS, TIMEOUT_MS);
      runt.push(m);
      console.log(describeRunt(m));
    }
  } catch (e) {
    console.log(`${backend.padEnd(8)} runt failed: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    await system?.close();
  }
}

console.log(
  `runt bench: backlog/burst ${RUNS}, paced ${PACED_RUNS} at ${RATE}/s, ${AGENTS} agents, ${ROUNDS} round(s), load ${loadAverage()}`,
);
for (let round = 0; round < ROUNDS; round++) {
  for (const backend of BACKENDS) {
    const peers = SYSTEMS.filter((s) => s !== 'runt' && (s === 'raw' || backend === 'postgres'));
    if (MODES.includes('drain'))
      for (const p of peers) await peer({ peer: p as PeerTask['peer'], backend, mode: 'drain', jobs: RUNS });
    if (SYSTEMS.includes('runt')) await runtPhases(backend);
    if (MODES.includes('paced'))
      for (const p of peers.filter((x) => x !== 'raw'))
        await peer({ peer: p as PeerTask['peer'], backend, mode: 'paced', jobs: PACED_RUNS, rate: RATE });
  }
}

// Ratios: runt against every peer measured on the same backend (medians over rounds).
const median = (xs: number[]) => percentile(xs, 50);
console.log('\nratios (runt ÷ peer; medians over rounds):');
for (const backend of BACKENDS) {
  for (const phase of ['drain', 'burst'] as const) {
    const r = runt.filter((m) => m.backend === backend && m.phase === phase);
    if (r.length === 0) continue;
    const rps = median(r.map((m) => m.runsPerSecond));
    const cpu = median(r.map((m) => m.cpuMsPerRun.total));
    for (const p of ['raw', 'graphile', 'pgboss']) {
      const peers = results.filter((m) => m.task.backend === backend && m.task.peer === p && m.drain);
      if (peers.length === 0) continue;
      const prps = median(peers.map((m) => m.drain!.perSecond));
      const pcpu = median(peers.map((m) => m.cpuMsPerJob.total));
      console.log(
        `${backend.padEnd(8)} ${phase.padEnd(5)} runt ÷ ${PEER_LABEL[p]!.padEnd(62)} runs/s ${f(rps / prps, 3)}  cpu/run ${f(cpu / pcpu, 1)}×  (${f(rps, 0)} vs ${f(prps, 0)}/s; ${f(cpu, 2)} vs ${f(pcpu, 2)} ms)`,
      );
    }
  }
  const paced = runt.filter((m) => m.backend === backend && m.phase === 'paced');
  const gw = results.filter((m) => m.task.peer === 'graphile' && m.paced);
  if (paced.length > 0 && gw.length > 0) {
    const p50 = median(paced.map((m) => m.acceptedP50));
    const p99 = median(paced.map((m) => m.acceptedP99));
    const g50 = median(gw.map((m) => m.paced!.p50));
    const g99 = median(gw.map((m) => m.paced!.p99));
    console.log(
      `${backend.padEnd(8)} paced runt submit→accepted ÷ graphile-worker enqueue→start (Postgres): p50 ${f(p50 / g50, 2)}  p99 ${f(p99 / g99, 2)}  (${f(p50)}/${f(p99)} vs ${f(g50)}/${f(g99)} ms)`,
    );
  }
}
console.log(`load average at the end: ${loadAverage()}`);
if (CPU_PROF) {
  for (const file of readdirSync(CPU_PROF).filter((x) => x.endsWith('.cpuprofile'))) {
    console.log(`\n${file} — top self time:\n| self % | function | where |\n|---|---|---|`);
    for (const e of cpuProfileTop(join(CPU_PROF, file), 15))
      console.log(`| ${e.selfPercent.toFixed(1)} | \`${e.name}\` | ${e.where} |`);
  }
}
if (process.env.BENCH_JSON) console.log(JSON.stringify({ peers: results, runt }));
