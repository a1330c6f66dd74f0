import { PairingCodeRejectedError } from './pairing-error.js';
import { normalizePairingCode } from './normalize-pairing-code.js';

/**
 * Shows a code the way people read it, `XXXX-XXXX-XXXX`. Accepts any spelling that
 * `normalizePairingCode` accepts; throws `PairingCodeRejectedError` for anything else.
 *
 * @example
 * formatPairingCode('K7QM3XZART9C'); // 'K7QM-3XZA-RT9C'
 */
export function formatPairingCode(canonical: string): string {
  const c = normalizePairingCode(canonical);
  if (c === undefined) throw new PairingCodeRejectedError();
  return `${c.slice(0, 4)}-${c.slice(4, 8)}-${c.slice(8, 12)}`;
}
