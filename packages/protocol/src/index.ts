export * from './schemas.js';
export { CLI_PACKAGE, connectCommand } from './connect-command.js';
export { ApiError, isApiError } from './errors.js';
export { RUN_ERROR_CODES, isRunErrorCode, type RunErrorCode } from './error-codes.js';
export { ControlPlaneClient, backoffDelay, toApiError, type ControlPlaneClientOptions } from './client.js';
export * from './runs.js';
export { followRunEvents, parseSse, type FollowRunEventsOptions, type SseMessage } from './follow-events.js';
