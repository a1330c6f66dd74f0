import type { Context, MiddlewareHandler } from 'hono';
import { AuthError } from './auth-error.js';
import { hashToken } from './hash-token.js';
import type { TokenKind } from './mint-token.js';
import { parseToken } from './parse-token.js';
import { requestHeader } from './request-header.js';

/** Who made an authenticated request. */
export interface Principal {
  kind: TokenKind;
  /** credential id (workstation) or 'admin' */
  id: string;
  workstationId?: string;
}

/** Looks a token up by its hash; `undefined` for an unknown or revoked token. */
export type PrincipalResolver = (tokenHash: string, kind: TokenKind) => Promise<Principal | undefined>;

/** Hono env of routes behind `bearerAuth`: `c.get('principal')` is typed. */
export type AuthEnv = { Variables: { principal: Principal } };

export interface BearerAuthOptions {
  resolve: PrincipalResolver;
  /** Token kinds this route accepts; a valid token of another kind gets 403. */
  kinds: TokenKind[];
}

const BEARER = /^Bearer +([^\s]+) *$/i;

/**
 * Hono middleware that authenticates `Authorization: Bearer <token>`. A missing, malformed,
 * unknown or revoked token answers 401 `{error:{code:'unauthorized',message}}` with
 * `WWW-Authenticate: Bearer` (plus `error="invalid_token"` when a token was presented); a valid
 * token of a kind not in `kinds` answers 403 `forbidden`. On success the principal is in
 * `c.get('principal')`. The resolver only ever sees the token's SHA-256.
 *
 * @example
 * const app = new Hono<AuthEnv>();
 * app.use('/api/runs/*', bearerAuth({ kinds: ['admin'], resolve: async (hash) => (hash === adminHash ? { kind: 'admin', id: 'admin' } : undefined) }));
 * app.get('/api/runs', (c) => c.json({ who: c.get('principal').id }));
 */
export function bearerAuth(opts: BearerAuthOptions): MiddlewareHandler<AuthEnv> {
  const kinds = new Set(opts.kinds);
  if (kinds.size === 0) throw new TypeError('bearerAuth needs at least one token kind');
  return async (c, next) => {
    const header = requestHeader(c, 'authorization');
    if (header === undefined || header.trim() === '') {
      return deny(c, new AuthError('unauthorized', 'missing bearer token'), 'Bearer');
    }
    const token = BEARER.exec(header)?.[1];
    const parsed = token === undefined ? undefined : parseToken(token);
    if (token === undefined || parsed === undefined) {
      return deny(c, new AuthError('unauthorized', 'malformed bearer token'), 'Bearer error="invalid_token"');
    }
    const principal = await opts.resolve(hashToken(token), parsed.kind);
    if (principal === undefined) {
      return deny(
        c,
        new AuthError('unauthorized', 'invalid or revoked token'),
        'Bearer error="invalid_token"',
      );
    }
    if (!kinds.has(principal.kind)) {
      return deny(c, new AuthError('forbidden', `a ${principal.kind} token cannot use this endpoint`));
    }
    c.set('principal', principal);
    await next();
  };
}

function deny(c: Context, err: AuthError, challenge?: string): Response {
  if (challenge !== undefined) c.header('WWW-Authenticate', challenge);
  return c.json(
    { error: { code: err.code === 'forbidden' ? 'forbidden' : 'unauthorized', message: err.message } },
    err.status,
  );
}
