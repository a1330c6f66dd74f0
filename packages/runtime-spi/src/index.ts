export * from './runtime.js';
export { RuntimeError, isRuntimeError, type RuntimeErrorCode } from './errors.js';
export { runFailureKind, type RuntimeFailureKind } from './run-failure-kind.js';
export { RuntimeRegistry, type RuntimeFactory } from './registry.js';
export {
  singleFlight,
  type SingleFlight,
  type SingleFlightOptions,
  type SingleFlightRunOptions,
} from './single-flight.js';
export { withManagedLabels, matchesLabels } from './labels.js';
export { throwIfAborted, abortedError, abortable, sleep } from './abort.js';
export { AsyncQueue } from './async-queue.js';
export { untilStarted, START_GRACE_MS, type UntilStartedOptions } from './wait-for-start.js';
