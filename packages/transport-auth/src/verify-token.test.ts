import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hashToken } from './hash-token.js';
import { mintToken, type TokenKind } from './mint-token.js';
import { verifyToken } from './verify-token.js';

const kind = fc.constantFrom<TokenKind>('admin', 'workstation');

describe('hashToken / verifyToken', () => {
  it('hashes the whole token with SHA-256 hex', () => {
    const t = mintToken('admin');
    expect(hashToken(t)).toBe(createHash('sha256').update(t).digest('hex'));
    expect(hashToken(t)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashToken(t)).not.toContain(t.slice(8));
  });

  it('verifies a minted token against its own hash (either hex case)', () => {
    fc.assert(
      fc.property(kind, (k) => {
        const t = mintToken(k);
        expect(verifyToken(t, hashToken(t))).toBe(true);
        expect(verifyToken(t, hashToken(t).toUpperCase())).toBe(true);
      }),
    );
  });

  it('is false for any other token', () => {
    fc.assert(
      fc.property(kind, kind, (a, b) => {
        const t = mintToken(a);
        expect(verifyToken(mintToken(b), hashToken(t))).toBe(false);
      }),
    );
  });

  it('is false for any altered hash', () => {
    fc.assert(
      fc.property(kind, fc.nat({ max: 63 }), fc.integer({ min: 1, max: 15 }), (k, pos, delta) => {
        const t = mintToken(k);
        const h = hashToken(t);
        const digit = ((parseInt(h[pos]!, 16) + delta) % 16).toString(16);
        const altered = h.slice(0, pos) + digit + h.slice(pos + 1);
        expect(verifyToken(t, altered)).toBe(false);
      }),
    );
  });

  it('is false (not a throw) for malformed tokens or hashes', () => {
    const t = mintToken('workstation');
    const h = hashToken(t);
    expect(verifyToken(t, h.slice(1))).toBe(false);
    expect(verifyToken(t, `${h}00`)).toBe(false);
    expect(verifyToken(t, 'z'.repeat(64))).toBe(false);
    expect(verifyToken(t, '')).toBe(false);
    // A malformed token whose hash is known still fails: the format is part of validity.
    expect(verifyToken('hunter2', hashToken('hunter2'))).toBe(false);
    fc.assert(
      fc.property(fc.string(), fc.string(), (a, b) => {
        expect(verifyToken(a, b)).toBe(false);
      }),
    );
  });
});
