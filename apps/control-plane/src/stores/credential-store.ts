import { randomUUID } from 'node:crypto';
import type { Database, Queryable } from '@runt/sql';
import { hashToken, mintToken } from '@runt/transport-auth';
import type { Credential } from '@runt/protocol';
import { CREDENTIALS_CHANNEL, type PrincipalCache } from './principal-cache.js';

const iso = (v: Date | string | null): string | null => (v === null ? null : new Date(v).toISOString());

/**
 * Credentials in SQL: issue one for a new workstation, list, revoke, and the admin bootstrap.
 * Tokens are stored only as SHA-256 hashes; a secret leaves this module once, in the return
 * value of {@link CredentialStore.issue} or {@link CredentialStore.ensureAdmin}. Every change
 * notifies {@link CREDENTIALS_CHANNEL} in the same statement or transaction (other replicas
 * drop their cached principals) and drops this process's cached ones.
 *
 * @example
 * const credentials = new CredentialStore(db, principals);
 * await credentials.revoke('cred_1');
 */
export class CredentialStore {
  constructor(
    private readonly db: Database,
    private readonly principals: PrincipalCache,
  ) {}

  /**
   * Inside the pairing transaction: a workstation credential for `workstationId`.
   * @returns its id and the one-time plaintext token
   */
  async issue(tx: Queryable, workstationId: string): Promise<{ credentialId: string; token: string }> {
    const credentialId = `cred_${randomUUID()}`;
    const token = mintToken('workstation');
    await tx.query('insert into credentials (id, kind, token_hash, workstation_id) values ($1, $2, $3, $4)', [
      credentialId,
      'workstation',
      hashToken(token),
      workstationId,
    ]);
    await tx.query(`select pg_notify('${CREDENTIALS_CHANNEL}', $1)`, [credentialId]);
    return { credentialId, token };
  }

  async list(): Promise<Credential[]> {
    const r = await this.db.query<{
      id: string;
      kind: 'admin' | 'workstation';
      workstation_id: string | null;
      display_name: string | null;
      created_at: Date;
      last_used_at: Date | null;
      revoked_at: Date | null;
    }>(
      `select c.id, c.kind, c.workstation_id, w.display_name, c.created_at, c.last_used_at, c.revoked_at
         from credentials c left join workstations w on w.id = c.workstation_id order by c.created_at, c.id`,
    );
    return r.rows.map((c) => ({
      ...c,
      created_at: iso(c.created_at)!,
      last_used_at: iso(c.last_used_at),
      revoked_at: iso(c.revoked_at),
    }));
  }

  /** Revokes a credential at once; idempotent. Returns undefined for an unknown id. */
  async revoke(id: string): Promise<Credential | undefined> {
    this.principals.forget(id);
    await this.db.query(
      `with c as (update credentials set revoked_at = coalesce(revoked_at, now()) where id = $1 returning id)
       select pg_notify('${CREDENTIALS_CHANNEL}', id) from c`,
      [id],
    );
    this.principals.forget(id);
    return (await this.list()).find((c) => c.id === id);
  }

  /** Which of these credentials have been revoked (maybe by another replica). */
  async revokedAmong(credentialIds: string[]): Promise<string[]> {
    if (credentialIds.length === 0) return [];
    const r = await this.db.query<{ id: string }>(
      'select id from credentials where id = any($1::text[]) and revoked_at is not null',
      [credentialIds],
    );
    return r.rows.map((x) => x.id);
  }

  /**
   * Makes sure an admin credential exists. With `token` (RUNT_ADMIN_TOKEN) its hash becomes the
   * `admin-env` credential; otherwise a generated one is kept as `admin`. Returns a freshly
   * minted token only when it had to mint one (the caller writes it to a 0600 file). Without
   * `regenerate` it mints only when no live `admin` credential exists, decided in one statement,
   * so of several replicas starting at once on an empty Postgres exactly one mints.
   *
   * @example
   * const { minted } = await credentials.ensureAdmin({ regenerate: false });
   */
  async ensureAdmin(opts: { token?: string; regenerate?: boolean }): Promise<{ minted?: string }> {
    this.principals.forget();
    // One bootstrap at a time across replicas (a transaction-scoped advisory lock, as the
    // migrations take): replicas started at once with the same RUNT_ADMIN_TOKEN each upsert the
    // same `admin-env` row, and the loser's speculative insert can hit the token hash's unique
    // index, which `on conflict (id)` does not arbitrate — a replica exited at start with
    // "duplicate key … credentials_token_hash_key" (issue 10, replicas bench, 2026-12-03).
    const minted = await this.db.transaction(async (tx) => {
      await tx.query(`select pg_advisory_xact_lock(hashtext('runt_admin_credential'))`);
      if (opts.token) {
        await tx.query(
          `with c as (insert into credentials (id, kind, token_hash) values ('admin-env', 'admin', $1)
             on conflict (id) do update set token_hash = excluded.token_hash, revoked_at = null returning id)
           select pg_notify('${CREDENTIALS_CHANNEL}', id) from c`,
          [hashToken(opts.token)],
        );
        return undefined;
      }
      const token = mintToken('admin');
      // Replaces a live admin token only when asked to; a revoked one always.
      const r = await tx.query(
        `with c as (insert into credentials (id, kind, token_hash) values ('admin', 'admin', $1)
           on conflict (id) do update set token_hash = excluded.token_hash, revoked_at = null, created_at = now()
           where $2 or credentials.revoked_at is not null returning id)
         select pg_notify('${CREDENTIALS_CHANNEL}', id) from c`,
        [hashToken(token), Boolean(opts.regenerate)],
      );
      return r.rows.length > 0 ? token : undefined;
    });
    this.principals.forget();
    return minted === undefined ? {} : { minted };
  }
}
