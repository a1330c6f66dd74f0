import type { Database } from '@runt/sql';
import type { Principal, TokenKind } from '@runt/transport-auth';
import type { NotificationBus } from '../notifications/bus.js';

/** Postgres channel every credential change notifies, with the credential id as payload. */
export const CREDENTIALS_CHANNEL = 'runt_credentials';
/** Cached principals at most; the least recently used go first. */
const CACHE_MAX = 10_000;
/** Re-read every 30 s anyway (a bound if all else failed; also keeps last_used_at within its minute). */
const CACHE_TTL_MS = 30_000;

/**
 * Resolves bearer tokens (by hash) to principals, with a bounded cache: least recently used
 * evicted past {@link CACHE_MAX}, every entry re-read after {@link CACHE_TTL_MS}.
 *
 * - Embedded PGlite: this process is the only writer of `credentials`, and every change goes
 *   through `CredentialStore`, which calls {@link PrincipalCache.forget}.
 * - Postgres: several replicas share the table. Every change notifies
 *   {@link CREDENTIALS_CHANNEL} with the credential id in the same statement/transaction, and
 *   the notification bus delivers it to every replica, which drops that credential's entries.
 *   While the bus's connection is down (or before it is up) nothing is served from or put in
 *   the cache, and it starts empty once it is back, so a missed notification can never keep a
 *   revoked token alive.
 *
 * @example
 * const principals = new PrincipalCache(db, bus);
 * const p = await principals.resolve(hashToken(token), 'workstation');
 */
export class PrincipalCache {
  readonly #principals = new Map<string, { principal: Principal; until: number }>();
  /** PGlite: always; Postgres: only while the LISTEN connection is up. */
  #caching: boolean;
  /** Bumped by every credential change: a lookup that overlapped one is not cached. */
  #generation = 0;
  #stats = { hits: 0, misses: 0, listenLost: 0 };
  /** Told about every credential changed by another replica (or this one), by id. */
  onCredentialChanged: ((credentialId: string) => void) | undefined;

  constructor(
    private readonly db: Database,
    bus: NotificationBus,
  ) {
    this.#caching = db.backend === 'pglite';
    bus.subscribe(CREDENTIALS_CHANNEL, {
      message: (credentialId) => {
        this.forget(credentialId || undefined);
        if (credentialId) this.onCredentialChanged?.(credentialId);
      },
      // Whatever was read before LISTEN was up may have missed a change: start empty.
      up: () => {
        this.forget();
        this.#caching = true;
      },
      down: () => {
        this.#caching = false;
        this.#stats.listenLost++;
        this.forget();
      },
    });
  }

  /** Turns the cache off on Postgres (no more notifications will arrive). */
  close(): void {
    if (this.db.backend === 'postgres') this.#caching = false;
  }

  /** Cache counters and state, for tests and metrics. */
  stats(): { enabled: boolean; size: number; hits: number; misses: number; listenLost: number } {
    return { enabled: this.#caching, size: this.#principals.size, ...this.#stats };
  }

  /** Resolves a token hash to its principal; revoked or unknown → undefined. */
  async resolve(tokenHash: string, kind: TokenKind): Promise<Principal | undefined> {
    const key = `${kind}:${tokenHash}`;
    if (this.#caching) {
      const cached = this.#principals.get(key);
      if (cached && cached.until > Date.now()) {
        // Most recently used last: eviction takes the first key.
        this.#principals.delete(key);
        this.#principals.set(key, cached);
        this.#stats.hits++;
        return cached.principal;
      }
      if (cached) this.#principals.delete(key);
    }
    this.#stats.misses++;
    const generation = this.#generation;
    // On the priority lane: every agent request, lease renewals included, waits for this read,
    // and a renewal must not queue behind the work it protects (issue 8, defect 10). One indexed
    // read, and on a cache miss only.
    const r = await this.db.priority.query<{
      id: string;
      kind: TokenKind;
      workstation_id: string | null;
      stale: boolean;
    }>(
      `select id, kind, workstation_id,
              (last_used_at is null or last_used_at < now() - interval '60 seconds') as stale
         from credentials where token_hash = $1 and kind = $2 and revoked_at is null`,
      [tokenHash, kind],
    );
    const row = r.rows[0];
    if (!row) return undefined;
    // last_used_at is informational: refresh it at most once a minute, off the request path.
    if (row.stale)
      void this.db
        .query('update credentials set last_used_at = now() where id = $1', [row.id])
        .catch(() => {});
    const principal: Principal = row.workstation_id
      ? { kind: row.kind, id: row.id, workstationId: row.workstation_id }
      : { kind: row.kind, id: row.id };
    if (this.#caching && generation === this.#generation) {
      while (this.#principals.size >= CACHE_MAX)
        this.#principals.delete(this.#principals.keys().next().value!);
      this.#principals.set(key, { principal, until: Date.now() + CACHE_TTL_MS });
    }
    return principal;
  }

  /** Forgets cached principals (all, or one credential's) after a credential changed. */
  forget(credentialId?: string): void {
    this.#generation++;
    if (credentialId === undefined) this.#principals.clear();
    else
      for (const [key, entry] of this.#principals)
        if (entry.principal.id === credentialId) this.#principals.delete(key);
  }
}
