// `pnpm bench` in bench/: runt beside its peers on the same Postgres server and on PGlite, in one
// sitting, interleaved (each round runs every system once, in turn). Loopback only, bounded:
// every measurement stops after BENCH_TIMEOUT_MS; it ends only the processes it started.
//
//   BENCH_RUNS=2000          backlog size per drain (the size: 10000)
//   BENCH_PACED_RUNS=250     jobs in the paced run (the issue's: 1000), at BENCH_RATE=50 per second
//   BENCH_ROUNDS=1           rounds of the whole interleaved sequence
//   BENCH_BACKENDS=postgres,pglite   BENCH_SYSTEMS=raw,graphile,pgboss   BENCH_MODES=drain,paced
import { measurePeer, type PeerMeasurement } from './measure-peer.js';
import type { PeerTask } from './peer-host.js';
import { loadAverage } from './stats.js';

const env = (name: string, fallback: string) => process.env[name] ?? fallback;
const RUNS = Number(env('BENCH_RUNS', '2000'));
const PACED_RUNS = Number(env('BENCH_PACED_RUNS', '250'));
const RATE = Number(env('BENCH_RATE', '50'));
const ROUNDS = Number(env('BENCH_ROUNDS', '1'));
const BACKENDS = env('BENCH_BACKENDS', 'postgres,pglite').split(',') as Array<'postgres' | 'pglite'>;
const SYSTEMS = env('BENCH_SYSTEMS', 'raw,graphile,pgboss').split(',');
const MODES = env('BENCH_MODES', 'drain,paced').split(',');
const TIMEOUT_MS = Number(env('BENCH_TIMEOUT_MS', '180000'));

const PEER_LABEL: Record<string, string> = {
  raw: 'raw SKIP LOCKED (4 conns, unbatched)',
  graphile: 'graphile-worker 0.17 (c16, local queue 10, batched completion)',
  pgboss: 'pg-boss 10.4 (batches of 10)',
};
const f = (x: number | undefined, digits = 1) => (x !== undefined && Number.isFinite(x) ? x.toFixed(digits) : '-');

function describe(m: PeerMeasurement): string {
  const head = `${m.task.backend.padEnd(8)} ${m.task.mode.padEnd(5)} ${PEER_LABEL[m.task.peer]!.padEnd(62)}`;
  const cpu = `cpu/job ${f(m.cpuMsPerJob.total, 2)} ms (worker ${f(m.cpuMsPerJob.worker, 2)}, db ${f(m.cpuMsPerJob.database, 2)})`;
  if (m.drain) return `${head} ${f(m.drain.perSecond, 0).padStart(6)} jobs/s  ${m.drain.completed}/${m.drain.jobs} in ${f(m.drain.seconds, 2)} s  ${cpu}  load ${m.load}`;
  return `${head} enqueue→start p50 ${f(m.paced!.p50)} ms p99 ${f(m.paced!.p99)} ms  ${m.paced!.started}/${m.paced!.jobs} at ${m.paced!.rate}/s  ${cpu}  load ${m.load}`;
}

const results: PeerMeasurement[] = [];
console.log(`runt bench: backlog ${RUNS}, paced ${PACED_RUNS} at ${RATE}/s, ${ROUNDS} round(s), load ${loadAverage()}`);
for (let round = 0; round < ROUNDS; round++) {
  for (const mode of MODES) {
    for (const backend of BACKENDS) {
      for (const peer of SYSTEMS) {
        if (peer !== 'raw' && backend === 'pglite') continue; // graphile-worker and pg-boss need a Postgres server
        if (peer === 'raw' && mode === 'paced') continue; // the ceiling is a throughput figure
        const task: Omit<PeerTask, 'url' | 'dataDir'> = { peer: peer as PeerTask['peer'], backend, mode: mode as PeerTask['mode'], jobs: mode === 'drain' ? RUNS : PACED_RUNS, rate: RATE };
        try {
          const m = await measurePeer(task, TIMEOUT_MS);
          results.push(m);
          console.log(describe(m));
        } catch (e) {
          console.log(`${backend.padEnd(8)} ${mode.padEnd(5)} ${PEER_LABEL[peer]!.padEnd(62)} failed: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
    }
  }
}
if (process.env.BENCH_JSON) console.log(JSON.stringify(results));
