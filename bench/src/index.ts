export { graphilePeer } from './graphile-peer.js';
export { measurePeer, type PeerMeasurement } from './measure-peer.js';
export type { PacedResult, Peer } from './peer.js';
export { openPeer, type PeerTask } from './peer-host.js';
export { pgBossPeer } from './pgboss-peer.js';
export { createBenchDatabase, BENCH_POSTGRES_URL, type BenchDatabase } from './postgres-server.js';
export { CpuMeter, processCpuSeconds, processTree } from './proc-cpu.js';
export { rawCeilingPeer, type DrainResult, type RawCeilingOptions } from './raw-ceiling.js';
export { loadAverage, nowMs, percentile, sleep } from './stats.js';
