import { errorBodySchema } from './schemas.js';

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

/**
 * The {@link ApiError} of an error answer: the server's `{error:{code,message,details}}` when the
 * body has that shape (see `errorBodySchema`), else `http-error` with the status line.
 *
 * @example
 * if (answer.status >= 400) throw apiErrorOf(answer.status, answer.statusText, answer.json(), cp.url);
 */
export function apiErrorOf(status: number, statusText: string, body: unknown, url: string): ApiError {
  const parsed = errorBodySchema.safeParse(body);
  if (parsed.success)
    return new ApiError(status, parsed.data.error.code, parsed.data.error.message, parsed.data.error.details);
  return new ApiError(status, 'http-error', `${url} answered ${status} ${statusText}`.trim());
}

/** The {@link ApiError} (code `unreachable`) of a request that could not be sent or got no answer in time. */
export function unreachableError(url: string, reason: string, cause?: unknown): ApiError {
  return new ApiError(0, 'unreachable', `cannot reach ${url}: ${reason}`, undefined, { cause });
}
