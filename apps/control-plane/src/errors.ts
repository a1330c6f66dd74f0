import type { Context } from 'hono';
import { isLeaseError } from '@runt/leases';
import { isPairingError } from '@runt/pairing';
import { isDatabaseUnavailable } from '@runt/sql';
import { redactSecrets } from '@runt/transport-auth';
import { isRunError } from './runs/run-error.js';
import type { Logger } from 'pino';

/** Stable API error codes mapped to their HTTP status. Extend, never rename. */
export const API_ERROR_STATUS = {
  'invalid-json': 400,
  'invalid-request': 400,
  unauthorized: 401,
  forbidden: 403,
  'not-found': 404,
  'pairing-code-rejected': 404,
  conflict: 409,
  'run-not-active': 409,
  'run-not-offered': 409,
  'runner-lease-conflict': 409,
  'event-seq-gap': 409,
  'command-not-active': 409,
  'bundle-digest-mismatch': 400,
  'bundle-missing': 400,
  /** A run with secret env entries on a control plane without a secret key (Postgres and no `RUNT_SECRET_KEY`). */
  'secrets-unavailable': 400,
  'upgrade-required': 426,
  'payload-too-large': 413,
  'unsupported-media-type': 415,
  'rate-limited': 429,
  internal: 500,
  unavailable: 503,
} as const;
export type ApiErrorCode = keyof typeof API_ERROR_STATUS;

/** Thrown by routes; {@link handleError} turns it into `{error:{code,message,details?}}`. */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly code: ApiErrorCode,
    message: string,
    readonly details?: unknown,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
  get status(): (typeof API_ERROR_STATUS)[ApiErrorCode] {
    return API_ERROR_STATUS[this.code];
  }
}

/**
 * The one place domain and library errors become API errors (code → status via
 * {@link API_ERROR_STATUS}); anything unknown is a logged 500 that leaks nothing.
 */
export function toHttpError(e: unknown): HttpError | undefined {
  if (e instanceof HttpError) return e;
  if (isRunError(e)) return new HttpError(e.code, e.message, e.details);
  if (isPairingError(e, 'pairing-code-rejected'))
    return new HttpError('pairing-code-rejected', (e as Error).message);
  if (isPairingError(e, 'rate-limited')) {
    const seconds = Math.max(1, Math.ceil((e as { retryAfterSeconds?: number }).retryAfterSeconds ?? 60));
    return new HttpError('rate-limited', 'too many attempts; try again later', undefined, {
      'Retry-After': String(seconds),
    });
  }
  if (isLeaseError(e, 'runner-lease-conflict')) {
    const reason = (e as { reason?: string }).reason;
    return new HttpError('runner-lease-conflict', (e as Error).message, reason ? { reason } : undefined);
  }
  if (isLeaseError(e, 'lease-invalid-argument'))
    return new HttpError('invalid-request', (e as Error).message);
  // A Postgres restart or a dropped connection: the client may retry (its request was not applied).
  if (isDatabaseUnavailable(e))
    return new HttpError('unavailable', 'the database is unavailable; try again shortly', undefined, {
      'Retry-After': '2',
    });
  return undefined;
}

/** The app's one `onError`. */
export function handleError(logger: Logger) {
  return (e: unknown, c: Context) => {
    const known = toHttpError(e);
    if (known) {
      for (const [k, v] of Object.entries(known.headers)) c.header(k, v);
      const body = {
        error: {
          code: known.code,
          message: known.message,
          ...(known.details === undefined ? {} : { details: known.details }),
        },
      };
      return c.json(body, known.status);
    }
    logger.error(
      { err: redactSecrets(serialiseError(e)), method: c.req.method, path: c.req.path },
      'unhandled error',
    );
    return c.json({ error: { code: 'internal', message: 'internal error' } }, 500);
  };
}

function serialiseError(e: unknown): Record<string, unknown> {
  if (e instanceof Error) return { name: e.name, message: e.message, stack: e.stack };
  return { value: String(e) };
}
