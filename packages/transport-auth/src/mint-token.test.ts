import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TOKEN_PREFIXES, mintToken, type TokenKind } from './mint-token.js';
import { parseToken } from './parse-token.js';

const kinds: TokenKind[] = ['admin', 'workstation'];

describe('mintToken', () => {
  it('is the kind prefix plus 43 base64url characters of 32 bytes', () => {
    for (const kind of kinds) {
      const t = mintToken(kind);
      expect(t.startsWith(TOKEN_PREFIXES[kind])).toBe(true);
      const secret = t.slice(TOKEN_PREFIXES[kind].length);
      expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(secret, 'base64url')).toHaveLength(32);
    }
    expect(TOKEN_PREFIXES).toEqual({ admin: 'rnt_adm_', workstation: 'rnt_ws_' });
  });

  it('never repeats', () => {
    const seen = new Set(Array.from({ length: 1000 }, () => mintToken('workstation')));
    expect(seen.size).toBe(1000);
  });

  it('round-trips through parseToken for every kind', () => {
    fc.assert(
      fc.property(fc.constantFrom(...kinds), (kind) => {
        const t = mintToken(kind);
        const parsed = parseToken(t);
        expect(parsed).toEqual({ kind, secret: t.slice(TOKEN_PREFIXES[kind].length) });
      }),
    );
  });

  it('rejects an unknown kind', () => {
    expect(() => mintToken('root' as TokenKind)).toThrow(TypeError);
  });
});
