export { Agent, type AgentOptions, type AgentState } from './agent.js';
export { AgentError, isAgentError, type AgentErrorCode } from './agent-error.js';
export { loadAgentConfig, cloudUrlsFromEnv, AGENT_USAGE, type AgentConfig } from './agent-config.js';
export { defaultRuntimes } from './default-runtimes.js';
export {
  LinkClient,
  LINK_BACKOFF_CAP_MS,
  LINK_START_JITTER_MS,
  LINK_HANDSHAKE_TIMEOUT_MS,
  LINK_SHED_HOLD_MAX_MS,
  type LinkClientOptions,
} from './link-client.js';
export { linkVia } from './link-via.js';
export { CloudUrlPool, parseCloudUrls } from './cloud-url-pool.js';
export { RunExecution, type RunExecutionDeps, type RunExecutionPhase } from './run-execution.js';
export {
  prepareRun,
  RUN_ID_LABEL,
  WORKSTATION_LABEL,
  type PrepareRunOptions,
  type PrepareResult,
} from './run-prepare.js';
export { followRunOutput, type RunOutputOptions } from './run-output.js';
export { RunCommands, type RunCommandsOptions } from './run-commands.js';
export { RunReporter, type RunReporterOptions } from './run-reporter.js';
export { failed, cancelled, exitOutcome, type Outcome } from './run-outcome.js';
export { RunEventLog, type RunEventLogOptions } from './run-event-log.js';
export { RunStateStore, type RunState } from './run-state-store.js';
export { materializeBundle } from './materialize-bundle.js';
export { createLogger } from './create-logger.js';
export {
  defaultLogFormat,
  prettyDestination,
  prettyLine,
  colourEnabled,
  LOG_FORMATS,
  type LogFormat,
} from './log-format.js';
export { Reachability, unreachableReason, formatDuration, type ReachReport } from './reachability.js';
export { RunSlots, type RunSlotsOptions, type SlotRun } from './run-slots.js';
export { readoptRuns, type ReadoptRunsOptions, type ConfirmedLease } from './readopt-runs.js';
export { releaseOrphans, type ReleaseOrphansOptions } from './release-orphans.js';
export { recordRunner } from './runner-history.js';
export {
  heartbeatLoop,
  pollLoop,
  LinkDownGrace,
  type HeartbeatLoopOptions,
  type PollLoopOptions,
} from './agent-loops.js';
export { handleControlMessage, type ControlMessageHandlers } from './control-messages.js';
export { WorkstationRegistration, type WorkstationRegistrationOptions } from './workstation-registration.js';
export { acquireAgentLock, processState, type ProcessState } from './agent-lock.js';
export { takeToken, TOKEN_FD_ENV, type TokenHandover } from './token-handover.js';
