export * from './schemas.js';
export { CLI_PACKAGE, connectCommand } from './connect-command.js';
export { ApiError, isApiError, apiErrorOf, unreachableError } from './errors.js';
export { RUN_ERROR_CODES, isRunErrorCode, type RunErrorCode } from './error-codes.js';
export { ControlPlaneClient, type ControlPlaneClientOptions } from './client.js';
export * from './runs.js';
export {
  SECRET_MASK,
  MAX_SECRETS_PER_RUN,
  envNameSchema,
  submitEnvValueSchema,
  splitSecretEnv,
  isSecretEnv,
  type SubmitEnvValue,
} from './secret-env.js';
export { SecretMasker, maskText, type Masked } from './secret-masker.js';
export {
  LEASE_MS_MIN,
  LEASE_MS_MAX,
  LEASE_MS_DEFAULT,
  MIN_HELD_LEASE_MS,
  leaseMsSchema,
} from './lease-limits.js';
export { followRunEvents, parseSse, type FollowRunEventsOptions, type SseMessage } from './follow-events.js';
export { backoffDelay, parseRetryAfter, sleep, jitter, type BackoffOptions } from './retry.js';
export {
  HttpTransport,
  TransportError,
  jsonAnswer,
  type TransportVia,
  type HttpTransportOptions,
  type RetryOptions,
  type TransportRequest,
  type TransportAnswer,
  type TransportStream,
} from './transport.js';
export {
  MAX_JSON_DEPTH,
  findUnsafeJson,
  isUnsafeText,
  jsonNestsDeeperThan,
  jsonTextIsSafe,
} from './json-safety.js';
export { BODY_LIMIT_BYTES_DEFAULT, LOG_EVENT_MAX_CHARS, splitLogData } from './body-limit.js';
export {
  LOG_EVENT_MAX_BYTES,
  logPayloads,
  logBytes,
  type LogPayload,
  type LogEventStream,
} from './log-payload.js';
export {
  LINK_OPS,
  BASE_LINK_OPS,
  STATUS_STARTED_FORM,
  LINK_REQUESTS_FORM,
  MAX_LINK_BATCH_REQUESTS,
  MAX_LINK_BATCH_BYTES,
  linkOpSchema,
  linkRequestOf,
  agentRequestMessageSchema,
  agentRequestsMessageSchema,
  controlReplyMessageSchema,
  controlRepliesMessageSchema,
  type LinkOp,
  type AgentRequestMessage,
  type AgentRequestsMessage,
  type ControlReplyMessage,
  type ControlRepliesMessage,
} from './link-requests.js';
export { corkForIteration, corkForTurn, type Corkable } from './cork-turn.js';
export { offerClaimedOf, parseControlMessage } from './control-message-fast.js';
export {
  agentRequestOf,
  agentRequestsOf,
  linkRequestBodyOf,
  parseAgentMessage,
} from './agent-message-fast.js';
