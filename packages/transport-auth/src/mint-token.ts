import { randomBytes } from 'node:crypto';

export type TokenKind = 'admin' | 'workstation';

/** The recognisable prefix of each token kind, so a leaked token is easy to spot and scan for. */
export const TOKEN_PREFIXES: { readonly admin: 'rnt_adm_'; readonly workstation: 'rnt_ws_' } = Object.freeze({
  admin: 'rnt_adm_',
  workstation: 'rnt_ws_',
});

/**
 * Mints a new bearer token: the kind's prefix followed by 32 random bytes in base64url
 * (43 characters). Show it once, store only `hashToken(token)`.
 *
 * @example
 * const token = mintToken('workstation'); // 'rnt_ws_3q2k…' (50 characters)
 */
export function mintToken(kind: TokenKind): string {
  const prefix = TOKEN_PREFIXES[kind];
  if (prefix === undefined) throw new TypeError(`unknown token kind: ${String(kind)}`);
  return prefix + randomBytes(32).toString('base64url');
}
