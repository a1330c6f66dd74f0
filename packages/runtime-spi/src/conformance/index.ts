export { describeRuntimeConformance, type ConformanceOptions } from './suite.js';
export type { ReattachInNewProcess } from './reattach-child.js';
export {
  collectLogs,
  collectExec,
  waitForLogText,
  waitForTerminalText,
  expectRuntimeError,
  type CollectedOutput,
} from './helpers.js';
