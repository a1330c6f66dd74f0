import type { RunErrorCode } from '@runt/protocol';

const MARKER = Symbol.for('runt.run-error');

/**
 * A refusal on the run path (unknown run, run already ended, stale fencing token, …), thrown by
 * the transitions, the lifecycle and the run stores. It carries a code of `@runt/protocol`'s
 * `RUN_ERROR_CODES` and never an HTTP status: `errors.ts` maps it to one. Check with
 * {@link isRunError}, which also recognises a copy from another instance of this module.
 *
 * @example
 * throw new RunError('event-seq-gap', 'expected event seq 4, got 6', { next_event_seq: 4 });
 */
export class RunError extends Error {
  override readonly name = 'RunError';
  readonly [MARKER] = true;
  constructor(
    readonly code: RunErrorCode,
    message: string,
    readonly details?: unknown,
    opts?: { cause?: unknown },
  ) {
    super(message, opts);
  }
}

/**
 * True for a {@link RunError}, optionally of one code.
 *
 * @example
 * catch (e) { if (isRunError(e, 'run-not-active')) return; throw e; }
 */
export function isRunError(e: unknown, code?: RunErrorCode): e is RunError {
  const ok = typeof e === 'object' && e !== null && (e as Record<symbol, unknown>)[MARKER] === true;
  return ok && (code === undefined || (e as RunError).code === code);
}

/** The one answer for a report about a run that already ended (the agent drops the run). */
export function runNotActive(): RunError {
  return new RunError('run-not-active', 'run is no longer active');
}
