export { createProcessRuntime, type ProcessRuntimeOptions } from './runtime.js';
export { parseProcStat, readStartTime, isSameProcessAlive, type ProcessIdentity } from './proc-stat.js';
