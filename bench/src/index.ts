export { graphilePeer } from './graphile-peer.js';
export { measurePeer, type PeerMeasurement } from './measure-peer.js';
export type { PacedResult, Peer } from './peer.js';
export { openPeer, type PeerTask } from './peer-host.js';
export { pgBossPeer } from './pgboss-peer.js';
export {
  createBenchDatabase,
  describeServerPhase,
  BENCH_POSTGRES_URL,
  ServerWindow,
  type BenchDatabase,
  type ServerPhase,
} from './postgres-server.js';
export {
  countersByLabel,
  describeCounts,
  describeStragglers,
  labelDelta,
  stragglers,
  type RunTiming,
} from './run-counts.js';
export { CpuMeter, processCpuSeconds, processStartTime, processTree } from './proc-cpu.js';
export { rawCeilingPeer, type DrainResult, type RawCeilingOptions } from './raw-ceiling.js';
export { loadAverage, nowMs, percentile, sleep } from './stats.js';
export { RuntSystem, type RuntMeasurement, type RuntSystemOptions } from './runt-system.js';
export { cpuProfileTop, type ProfileEntry } from './cpu-profile-top.js';
export { stderrTail, stopProcesses, waitReady } from './replica-ready.js';
export { startNotifyFloor, type FloorSample, type NotifyFloor } from './notify-floor.js';
