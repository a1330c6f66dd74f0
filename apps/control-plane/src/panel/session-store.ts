import { createHash, randomBytes } from 'node:crypto';
import type { Database } from '@runt/sql';

/** How long a panel session lives after sign-in (absolute, not sliding). */
export const SESSION_TTL_MS = 12 * 60 * 60 * 1000;

/** A signed-in panel session. */
export interface PanelSession {
  credentialId: string;
  expiresAt: Date;
}

const hash = (token: string) => createHash('sha256').update(token, 'utf8').digest('hex');

/**
 * Panel sessions in the database, so they work on every replica and survive a restart. The
 * cookie carries 32 random bytes; only their SHA-256 is stored (a lookup by hash needs no
 * constant-time compare: the hash of a guess reveals nothing about the stored one). Expiry is
 * judged by the database clock; a session ends with its admin credential too.
 *
 * @example
 * const token = await sessions.open('admin');
 * const s = await sessions.resolve(token); // { credentialId: 'admin', expiresAt }
 */
export class PanelSessionStore {
  constructor(
    private readonly db: Database,
    private readonly ttlMs = SESSION_TTL_MS,
  ) {}

  /** Opens a session for an admin credential; returns the cookie value (never stored). */
  async open(credentialId: string): Promise<string> {
    const token = randomBytes(32).toString('base64url');
    await this.db.query(
      `insert into panel_sessions (token_hash, credential_id, expires_at) values ($1, $2, now() + $3::float8 * interval '1 millisecond')`,
      [hash(token), credentialId, this.ttlMs],
    );
    // Sign-ins are rare: sweeping the expired ones here keeps the table small without a job.
    await this.db.query('delete from panel_sessions where expires_at < now()');
    return token;
  }

  /** The live session behind a cookie value, or undefined (unknown, expired, credential revoked). */
  async resolve(token: string | undefined): Promise<PanelSession | undefined> {
    if (!token || token.length > 100) return undefined;
    const r = await this.db.query<{ credential_id: string; expires_at: Date | string }>(
      `select s.credential_id, s.expires_at from panel_sessions s join credentials c on c.id = s.credential_id
        where s.token_hash = $1 and s.expires_at > now() and c.revoked_at is null and c.kind = 'admin'`,
      [hash(token)],
    );
    const row = r.rows[0];
    return row ? { credentialId: row.credential_id, expiresAt: new Date(row.expires_at) } : undefined;
  }

  /** Ends a session (sign out); unknown values are ignored. */
  async close(token: string | undefined): Promise<void> {
    if (!token) return;
    await this.db.query('delete from panel_sessions where token_hash = $1', [hash(token)]);
  }
}
