import { timingSafeEqual } from 'node:crypto';
import { hashToken } from './hash-token.js';
import { parseToken } from './parse-token.js';

const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;

/**
 * True when `token` is well formed and its SHA-256 equals `hash`, compared in constant time.
 * A malformed token or a hash that is not 64 hex characters gives `false`, never a throw.
 *
 * @example
 * if (!verifyToken(presented, row.token_hash)) return c.json({ error: { code: 'unauthorized', message: 'invalid token' } }, 401);
 */
export function verifyToken(token: string, hash: string): boolean {
  if (typeof hash !== 'string' || !HEX_SHA256.test(hash)) return false;
  if (parseToken(token) === undefined) return false;
  return timingSafeEqual(Buffer.from(hashToken(token), 'hex'), Buffer.from(hash, 'hex'));
}
