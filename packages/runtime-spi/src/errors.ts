/** Stable error codes: extend, never rename. */
export type RuntimeErrorCode =
  | 'runtime-unavailable'
  | 'image-unavailable'
  | 'instance-not-found'
  | 'instance-exists'
  | 'start-failed'
  | 'exec-failed'
  | 'invalid-spec'
  | 'aborted'
  | 'timeout'
  /** wait() on an instance nobody started within the start grace (e.g. its starter died first). */
  | 'not-started'
  | 'internal';

const MARKER = Symbol.for('runt.runtime-error');

/**
 * The one error every runtime throws. Check it with {@link isRuntimeError}, not `instanceof`:
 * two copies of this package in one tree would make `instanceof` lie.
 */
export class RuntimeError extends Error {
  override readonly name = 'RuntimeError';
  readonly code: RuntimeErrorCode;
  readonly runtime: string | undefined;
  readonly [MARKER] = true;

  constructor(code: RuntimeErrorCode, message: string, opts: { runtime?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.runtime = opts.runtime;
  }
}

/**
 * True for any RuntimeError, from any copy of this package.
 * @example
 * try { await rt.start(id) } catch (e) { if (isRuntimeError(e, 'instance-not-found')) … }
 */
export function isRuntimeError(e: unknown, code?: RuntimeErrorCode): e is RuntimeError {
  const ok = typeof e === 'object' && e !== null && (e as Record<symbol, unknown>)[MARKER] === true;
  return ok && (code === undefined || (e as RuntimeError).code === code);
}
