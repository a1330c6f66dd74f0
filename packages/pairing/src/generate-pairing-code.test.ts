import { describe, expect, it } from 'vitest';
import { PAIRING_ALPHABET, generatePairingCode } from './generate-pairing-code.js';
import { normalizePairingCode } from './normalize-pairing-code.js';

describe('generatePairingCode', () => {
  it('gives XXXX-XXXX-XXXX over the alphabet, which itself has 30 distinct unambiguous symbols', () => {
    expect(PAIRING_ALPHABET).toBe('23456789ABCDEFGHJKMNPQRSTVWXYZ');
    expect(new Set(PAIRING_ALPHABET).size).toBe(30);
    for (const ch of '01ILOU') expect(PAIRING_ALPHABET).not.toContain(ch);
    for (let i = 0; i < 200; i++) {
      const code = generatePairingCode();
      expect(code).toMatch(/^[23456789ABCDEFGHJKMNPQRSTVWXYZ]{4}(-[23456789ABCDEFGHJKMNPQRSTVWXYZ]{4}){2}$/);
      expect(normalizePairingCode(code)).toBe(code.replaceAll('-', ''));
    }
  });

  it('uses every symbol about equally often (no modulo bias)', () => {
    const counts = new Map<string, number>();
    const codes = 10_000;
    for (let i = 0; i < codes; i++) {
      for (const ch of generatePairingCode().replaceAll('-', '')) counts.set(ch, (counts.get(ch) ?? 0) + 1);
    }
    expect(counts.size).toBe(30);
    const expected = (codes * 12) / 30;
    const chiSquare = [...counts.values()].reduce((sum, n) => sum + (n - expected) ** 2 / expected, 0);
    // 29 degrees of freedom: a fair source stays below 80 with probability > 1 − 10⁻⁶; a
    // byte-modulo-30 source (the classic bias) lands around 400 with this many draws.
    expect(chiSquare).toBeLessThan(80);
  });

  it('does not repeat', () => {
    const seen = new Set(Array.from({ length: 5000 }, generatePairingCode));
    expect(seen.size).toBe(5000);
  });
});
