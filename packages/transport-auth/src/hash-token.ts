import { createHash } from 'node:crypto';

/**
 * The SHA-256 (lowercase hex) of the whole token, prefix included. This is what stores keep;
 * the token itself is never written anywhere.
 *
 * @example
 * await db.query('insert into credentials (id, token_hash) values ($1, $2)', [id, hashToken(token)]);
 */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}
