import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatPairingCode } from './format-pairing-code.js';
import { PAIRING_ALPHABET } from './generate-pairing-code.js';
import { hashPairingCode } from './hash-pairing-code.js';
import { normalizePairingCode } from './normalize-pairing-code.js';
import { isPairingError } from './pairing-error.js';

const symbol = fc.constantFrom(...PAIRING_ALPHABET.split(''));
const canonical = fc.array(symbol, { minLength: 12, maxLength: 12 }).map((a) => a.join(''));
const separator = fc.constantFrom('', '', ' ', '-', '_', '  ', ' - ', '\t');
const excluded = fc.constantFrom('0', 'O', 'o', '1', 'I', 'i', 'L', 'l', 'U', 'u');

/** Spells a canonical code the way a person might: random case and separators between symbols. */
const spelling = (code: string) =>
  fc
    .tuple(
      fc.array(fc.boolean(), { minLength: 12, maxLength: 12 }),
      fc.array(separator, { minLength: 13, maxLength: 13 }),
    )
    .map(
      ([lower, seps]) =>
        seps[0] + [...code].map((ch, i) => (lower[i] ? ch.toLowerCase() : ch) + seps[i + 1]).join(''),
    );

describe('normalizePairingCode', () => {
  it('maps any spelling of a code (case, spaces, dashes, underscores) to its 12 canonical symbols', () => {
    fc.assert(
      fc.property(
        canonical.chain((c) => fc.tuple(fc.constant(c), spelling(c))),
        ([c, typed]) => {
          expect(normalizePairingCode(typed)).toBe(c);
        },
      ),
    );
  });

  it('rejects the look-alikes 0 O 1 I L U wherever they appear', () => {
    fc.assert(
      fc.property(canonical, fc.nat({ max: 11 }), excluded, (c, pos, bad) => {
        const typed = c.slice(0, pos) + bad + c.slice(pos + 1);
        expect(normalizePairingCode(typed)).toBeUndefined();
      }),
    );
  });

  it('only ever returns undefined or 12 alphabet symbols, and is idempotent', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 40 }),
          canonical,
          canonical.map((c) => c.toLowerCase()),
        ),
        (s) => {
          const n = normalizePairingCode(s);
          if (n === undefined) return;
          expect(n).toMatch(new RegExp(`^[${PAIRING_ALPHABET}]{12}$`));
          expect(normalizePairingCode(n)).toBe(n);
        },
      ),
    );
  });

  it('rejects wrong lengths and other characters', () => {
    for (const bad of [
      '',
      'ABCD-EFGH-JKM',
      'ABCD-EFGH-JKMNP',
      'ABCD.EFGH.JKMN',
      'ABCD-EFGH-JKM!',
      'ÄBCD-EFGH-JKMN',
      'x'.repeat(100),
    ]) {
      expect(normalizePairingCode(bad), bad).toBeUndefined();
    }
    expect(normalizePairingCode(undefined as unknown as string)).toBeUndefined();
  });
});

describe('formatPairingCode / hashPairingCode', () => {
  it('formats as XXXX-XXXX-XXXX and round-trips through normalize', () => {
    fc.assert(
      fc.property(canonical, (c) => {
        const shown = formatPairingCode(c);
        expect(shown).toMatch(/^[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}$/);
        expect(normalizePairingCode(shown)).toBe(c);
      }),
    );
  });

  it('hashes every spelling of a code the same, and different codes differently', () => {
    fc.assert(
      fc.property(
        canonical.chain((c) => fc.tuple(fc.constant(c), spelling(c))),
        canonical,
        ([c, typed], other) => {
          expect(hashPairingCode(typed)).toBe(hashPairingCode(c));
          expect(hashPairingCode(c)).toMatch(/^[0-9a-f]{64}$/);
          if (other !== c) expect(hashPairingCode(other)).not.toBe(hashPairingCode(c));
        },
      ),
    );
  });

  it('throws pairing-code-rejected for something that is not a code', () => {
    for (const fn of [formatPairingCode, hashPairingCode]) {
      let caught: unknown;
      try {
        fn('NOPE');
      } catch (e) {
        caught = e;
      }
      expect(isPairingError(caught, 'pairing-code-rejected')).toBe(true);
    }
  });
});
