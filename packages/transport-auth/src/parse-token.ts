import { TOKEN_PREFIXES, type TokenKind } from './mint-token.js';

const SECRET = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;

/**
 * Splits a token into its kind and secret, or returns `undefined` when it is not exactly
 * what `mintToken` produces (known prefix + 43 base64url characters encoding 32 bytes, in
 * canonical form). No lookup happens here; it only rejects garbage early.
 *
 * @example
 * parseToken(mintToken('admin'))?.kind; // 'admin'
 * parseToken('hunter2');               // undefined
 */
export function parseToken(token: string): { kind: TokenKind; secret: string } | undefined {
  if (typeof token !== 'string') return undefined;
  for (const kind of Object.keys(TOKEN_PREFIXES) as TokenKind[]) {
    const prefix = TOKEN_PREFIXES[kind];
    if (!token.startsWith(prefix)) continue;
    const secret = token.slice(prefix.length);
    // The last character carries only 4 bits of the 32nd byte; the class above admits just the
    // canonical encodings, so every token has exactly one spelling.
    return SECRET.test(secret) ? { kind, secret } : undefined;
  }
  return undefined;
}
