import { randomInt } from 'node:crypto';

/** The 30 symbols of a pairing code: digits and capitals without 0, 1, I, L, O and U. */
export const PAIRING_ALPHABET = '23456789ABCDEFGHJKMNPQRSTVWXYZ';

/** Symbols in a code (without the dashes): 30^12 ≈ 2^59 possibilities. */
export const PAIRING_CODE_LENGTH = 12;

/**
 * A fresh pairing code shown as `XXXX-XXXX-XXXX`: 12 symbols of `PAIRING_ALPHABET`, each drawn
 * with `crypto.randomInt`, which rejects out-of-range draws so every symbol is equally likely.
 *
 * @example
 * generatePairingCode(); // 'K7QM-3XZA-RT9C'
 */
export function generatePairingCode(): string {
  let out = '';
  for (let i = 0; i < PAIRING_CODE_LENGTH; i++) {
    if (i > 0 && i % 4 === 0) out += '-';
    out += PAIRING_ALPHABET[randomInt(PAIRING_ALPHABET.length)];
  }
  return out;
}
