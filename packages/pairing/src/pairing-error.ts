const MARKER = Symbol.for('runt.pairing.PairingError');

/**
 * Codes used by this package: `pairing-code-rejected`, `rate-limited`, `unreachable`,
 * `server-error`, `credential-invalid`, `credential-unreadable`, `invalid-argument`.
 */
export type PairingErrorCode =
  | 'pairing-code-rejected'
  | 'rate-limited'
  | 'unreachable'
  | 'server-error'
  | 'credential-invalid'
  | 'credential-unreadable'
  | 'invalid-argument'
  | (string & {});

/**
 * The base error of `@runt/pairing`: a stable `name`, a string `code`, and for answers from a
 * server the HTTP `status`. Messages never contain a pairing code or a token.
 *
 * @example
 * throw new PairingError('unreachable', 'cannot reach https://runt.example.com: ECONNREFUSED');
 */
export class PairingError extends Error {
  override name = 'PairingError';
  readonly code: PairingErrorCode;
  readonly status?: number;
  readonly [MARKER] = true;

  constructor(code: PairingErrorCode, message: string, options?: { cause?: unknown; status?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    if (options?.status !== undefined) this.status = options.status;
  }
}

/** The one answer for an unknown, expired or used code, so a guesser learns nothing. */
export const PAIRING_CODE_REJECTED_MESSAGE = 'pairing code is invalid, expired, or already used';

/**
 * A pairing code that is malformed, unknown, expired or already used. All four look the same on
 * purpose. Code `pairing-code-rejected`.
 *
 * @example
 * if (isPairingError(e, 'pairing-code-rejected')) return c.json({ error: { code: e.code, message: e.message } }, 404);
 */
export class PairingCodeRejectedError extends PairingError {
  override name = 'PairingCodeRejectedError';

  constructor(options?: { cause?: unknown; status?: number }) {
    super('pairing-code-rejected', PAIRING_CODE_REJECTED_MESSAGE, options);
  }
}

/**
 * Too many failed redeems recently (from one address, or overall). `retryAfterSeconds` is
 * what to send as `Retry-After`. Code `rate-limited`.
 *
 * @example
 * if (e instanceof PairingRateLimitedError) c.header('Retry-After', String(e.retryAfterSeconds));
 */
export class PairingRateLimitedError extends PairingError {
  override name = 'PairingRateLimitedError';
  readonly retryAfterSeconds: number;

  constructor(retryAfterSeconds: number, options?: { cause?: unknown; status?: number }) {
    const s = Math.max(1, Math.ceil(retryAfterSeconds));
    super('rate-limited', `too many failed pairing attempts; try again in ${s} s`, options);
    this.retryAfterSeconds = s;
  }
}

/**
 * True for any error of this package (also from a duplicate copy of it: a `Symbol.for`
 * marker, not `instanceof`), and when `code` is given, only for that code.
 *
 * @example
 * if (isPairingError(e, 'rate-limited')) retryLater(e.retryAfterSeconds);
 */
export function isPairingError(e: unknown, code?: PairingErrorCode): e is PairingError {
  if (typeof e !== 'object' || e === null || (e as Record<symbol, unknown>)[MARKER] !== true) return false;
  return code === undefined || (e as { code?: unknown }).code === code;
}
