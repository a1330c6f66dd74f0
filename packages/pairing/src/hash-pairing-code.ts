import { createHash } from 'node:crypto';
import { PairingCodeRejectedError } from './pairing-error.js';
import { normalizePairingCode } from './normalize-pairing-code.js';

/**
 * SHA-256 (lowercase hex) of the canonical 12 symbols: what the store keeps instead of the
 * code. Any accepted spelling hashes the same; an invalid code throws `PairingCodeRejectedError`.
 *
 * @example
 * hashPairingCode('K7QM3XZART9C') === hashPairingCode('k7qm-3xza-rt9c'); // true
 */
export function hashPairingCode(canonical: string): string {
  const c = normalizePairingCode(canonical);
  if (c === undefined) throw new PairingCodeRejectedError();
  return createHash('sha256').update(c, 'utf8').digest('hex');
}
