const MARKER = Symbol.for('runt.api-error');

/**
 * An error answer from the control plane (`{error:{code,message}}` with its HTTP status), or a
 * failure to reach it (`status` 0, code `unreachable`). Check with {@link isApiError}.
 */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly [MARKER] = true;
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    opts?: { cause?: unknown },
  ) {
    super(message, opts);
  }
}

/**
 * True for an {@link ApiError} from any copy of this package, optionally of one code.
 * @example
 * catch (e) { if (isApiError(e, 'unauthorized')) console.error('credential revoked?') }
 */
export function isApiError(e: unknown, code?: string): e is ApiError {
  const ok = typeof e === 'object' && e !== null && (e as Record<symbol, unknown>)[MARKER] === true;
  return ok && (code === undefined || (e as ApiError).code === code);
}
