import { PAIRING_ALPHABET, PAIRING_CODE_LENGTH } from './generate-pairing-code.js';

const SEPARATORS = /[\s\-_]+/g;
const CANONICAL = new RegExp(`^[${PAIRING_ALPHABET}]{${PAIRING_CODE_LENGTH}}$`);

/**
 * Turns what a person typed into the 12 canonical symbols, or `undefined` when it cannot be a
 * code. Letters are upper-cased and whitespace, dashes and underscores dropped; anything else
 * must be in `PAIRING_ALPHABET`. The look-alikes `0 O 1 I L U` are never in a code, so they are
 * rejected rather than guessed at: a typo fails loudly instead of redeeming someone else's code.
 *
 * @example
 * normalizePairingCode(' k7qm-3xza rt9c '); // 'K7QM3XZART9C'
 * normalizePairingCode('K7QM-3XZA-RT90');   // undefined (0 is not a code symbol)
 */
export function normalizePairingCode(input: string): string | undefined {
  if (typeof input !== 'string' || input.length > 64) return undefined;
  const s = input.replace(SEPARATORS, '').toUpperCase();
  return CANONICAL.test(s) ? s : undefined;
}
