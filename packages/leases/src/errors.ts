const MARKER = Symbol.for('runt.leases.LeaseError');

/** Stable codes of `@runt/leases` errors. `runner-lease-conflict` is also a run failure kind. */
export type LeaseErrorCode =
  'runner-lease-conflict' | 'lease-lost' | 'lease-invalid-argument' | 'lease-request-failed';

/**
 * Why a claim, renewal, release or fenced write was refused: `held` (another holder has a live
 * lease), `stale-token` (the fencing token is not the current one), `expired` (the lease ran
 * out by the database clock), `not-held` (no lease, or it was released or swept), `remote` (the
 * control plane answered 409 and said no more).
 */
export type LeaseConflictReason = 'held' | 'stale-token' | 'expired' | 'not-held' | 'remote';

/** Why a held lease was lost: renewal `refused`, local deadline `expired`, or renewal `failed` for good. */
export type LeaseLostReason = 'refused' | 'expired' | 'failed';

/**
 * The base error of `@runt/leases`: a stable `name`, a string `code` and an optional `cause`.
 * Check it with `isLeaseError`, which also recognises errors thrown by another copy of the package.
 *
 * @example
 * throw new LeaseError('lease-invalid-argument', 'ttlMs must be a positive integer');
 */
export class LeaseError extends Error {
  override readonly name: string = 'LeaseError';
  readonly code: LeaseErrorCode;
  readonly [MARKER] = true;

  constructor(code: LeaseErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * The lease is not yours (HTTP 409, code `runner-lease-conflict`): someone else holds it, your
 * fencing token is stale, or it expired. A control plane answers it with
 * `409 {error:{code:'runner-lease-conflict', message}}`.
 *
 * @example
 * throw new LeaseConflictError('run_1', 'stale-token', 'fencing token 3 is not current');
 */
export class LeaseConflictError extends LeaseError {
  override readonly name: string = 'LeaseConflictError';
  readonly status = 409 as const;
  readonly resource: string;
  readonly reason: LeaseConflictReason;

  constructor(resource: string, reason: LeaseConflictReason, message: string, options?: { cause?: unknown }) {
    super('runner-lease-conflict', message, options);
    this.resource = resource;
    this.reason = reason;
  }
}

/**
 * A lease held through `LeaseClient.hold` is gone: the control plane refused a renewal, or no
 * renewal succeeded before the local deadline. It is the `reason` of the lease's `AbortSignal`.
 *
 * @example
 * lease.signal.addEventListener('abort', () => console.error((lease.signal.reason as LeaseLostError).reason));
 */
export class LeaseLostError extends LeaseError {
  override readonly name: string = 'LeaseLostError';
  readonly resource: string;
  readonly fencingToken: number;
  readonly reason: LeaseLostReason;

  constructor(
    resource: string,
    fencingToken: number,
    reason: LeaseLostReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('lease-lost', message, options);
    this.resource = resource;
    this.fencingToken = fencingToken;
    this.reason = reason;
  }
}

/**
 * The control plane could not be asked (network error, timeout) or answered something other than
 * success or 409 (`status` holds the HTTP status when there was one, `serverCode` the error code
 * of its `{error:{code}}` body). `retryAfterMs` is set when it asked us to come back later.
 *
 * @example
 * if (isLeaseError(e, 'lease-request-failed')) console.error((e as LeaseRequestError).status);
 */
export class LeaseRequestError extends LeaseError {
  override readonly name: string = 'LeaseRequestError';
  readonly status: number | undefined;
  readonly serverCode: string | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(
    message: string,
    details: { status?: number; serverCode?: string; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super('lease-request-failed', message, { cause: details.cause });
    this.status = details.status;
    this.serverCode = details.serverCode;
    this.retryAfterMs = details.retryAfterMs;
  }
}

/**
 * True for any `@runt/leases` error (optionally only one with the given `code`), also one thrown
 * by another copy of this package: it checks a `Symbol.for` marker, not `instanceof`.
 *
 * @example
 * if (isLeaseError(e, 'runner-lease-conflict')) return c.json({ error: { code: e.code, message: e.message } }, 409);
 */
export function isLeaseError(e: unknown, code?: LeaseErrorCode): e is LeaseError {
  if (typeof e !== 'object' || e === null || (e as Record<symbol, unknown>)[MARKER] !== true) return false;
  return code === undefined || (e as { code?: unknown }).code === code;
}
