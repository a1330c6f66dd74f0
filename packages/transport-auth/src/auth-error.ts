const MARKER = Symbol.for('runt.transport-auth.AuthError');

export type AuthErrorCode = 'unauthorized' | 'forbidden' | 'malformed-token';

const STATUS: Record<AuthErrorCode, 401 | 403> = {
  unauthorized: 401,
  forbidden: 403,
  'malformed-token': 401,
};

/**
 * The one error of `@runt/transport-auth`: a string `code` and the HTTP `status` it maps to
 * (`unauthorized` and `malformed-token` → 401, `forbidden` → 403). Messages never carry a token.
 *
 * @example
 * throw new AuthError('forbidden', 'this endpoint needs an admin token');
 */
export class AuthError extends Error {
  override readonly name = 'AuthError';
  readonly code: AuthErrorCode;
  readonly status: 401 | 403;
  readonly [MARKER] = true;

  constructor(code: AuthErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.status = STATUS[code];
  }
}

/**
 * True for an `AuthError`, also one thrown by another copy of this package (it checks a
 * `Symbol.for` marker, not `instanceof`).
 *
 * @example
 * if (isAuthError(e)) return c.json({ error: { code: e.code, message: e.message } }, e.status);
 */
export function isAuthError(e: unknown): e is AuthError {
  return typeof e === 'object' && e !== null && (e as Record<symbol, unknown>)[MARKER] === true;
}
