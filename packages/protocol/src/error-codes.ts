/**
 * The error codes the control plane answers on the run path (`{error:{code,message,details?}}`),
 * shared so clients can narrow on them instead of matching strings they typed themselves.
 * Extend, never rename: agents in the field branch on these.
 *
 * - `not-found`: no such run or command.
 * - `forbidden`: the run belongs to another workstation.
 * - `invalid-request`: a malformed argument (e.g. a list cursor that was not handed out).
 * - `run-not-active`: the run already ended; an agent drops it instead of retrying.
 * - `run-not-offered`: a claim of a run that is not (or no longer) offered to this workstation.
 * - `runner-lease-conflict`: the fencing token is not current, or its lease ran out.
 * - `event-seq-gap`: an event batch skips a seq (`details.next_event_seq` says where to resume).
 * - `command-not-active`: the command already finished (`details.state`).
 * - `secrets-unavailable`: a submit with secret env entries to a control plane that has no
 *   secret key (Postgres without `RUNT_SECRET_KEY`/`RUNT_SECRET_KEY_FILE`).
 */
export const RUN_ERROR_CODES = [
  'not-found',
  'forbidden',
  'invalid-request',
  'run-not-active',
  'run-not-offered',
  'runner-lease-conflict',
  'event-seq-gap',
  'command-not-active',
  'secrets-unavailable',
] as const;

/** One of {@link RUN_ERROR_CODES}. */
export type RunErrorCode = (typeof RUN_ERROR_CODES)[number];

/**
 * True when `code` is one of the run path's error codes.
 *
 * @example
 * catch (e) { if (isApiError(e) && isRunErrorCode(e.code) && e.code === 'run-not-active') dropRun() }
 */
export function isRunErrorCode(code: unknown): code is RunErrorCode {
  return typeof code === 'string' && (RUN_ERROR_CODES as readonly string[]).includes(code);
}
