import type { Database } from '@runt/sql';
import type { Principal, TokenKind } from '@runt/transport-auth';
import type { NotificationBus } from '../notifications/bus.js';

/** Postgres channel every credential change notifies, with the credential id as payload. */
export const CREDENTIALS_CHANNEL = 'runt_credentials';
/**
 * Cached principals at most by default; the least recently used go first. Sized for a fleet:
 * every agent's credential stays cached with room to spare at 20,000 agents (issue 9), so
 * neither a re-linking fleet nor its HTTP calls miss by eviction (≈ 0.3 KB an entry: ≈ 15 MB
 * when full).
 */
export const PRINCIPAL_CACHE_MAX = 50_000;
/** Re-read every 30 s anyway (a bound if all else failed; also keeps last_used_at within its minute). */
const CACHE_TTL_MS = 30_000;
/**
 * Stale `last_used_at`s found by lookups are refreshed together at most this often (ms): a fleet
 * re-linking after a restart misses the cache for every agent, and one `update` per lookup
 * batch was a third of the re-link's statements (issue 9).
 */
const TOUCH_EVERY_MS = 1_000;

/**
 * Resolves bearer tokens (by hash) to principals, with a bounded cache: least recently used
 * evicted past `maxEntries` (default {@link PRINCIPAL_CACHE_MAX}), every entry re-read after
 * {@link CACHE_TTL_MS}.
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
  /** Lookups waiting for the next batched read, by token hash. */
  #misses = new Map<
    string,
    Array<{ kind: TokenKind; resolve: (p: Principal | undefined) => void; reject: (e: unknown) => void }>
  >();
  /** A batched read is in flight: misses gather for the next one. */
  #reading = false;
  /** Credentials whose `last_used_at` is to be refreshed, and the timer that will. */
  #touch = new Set<string>();
  #touchTimer: NodeJS.Timeout | undefined;
  /** Told about every credential changed by another replica (or this one), by id. */
  onCredentialChanged: ((credentialId: string) => void) | undefined;

  readonly #max: number;

  constructor(
    private readonly db: Database,
    bus: NotificationBus,
    opts: { maxEntries?: number } = {},
  ) {
    this.#max = Math.max(1, opts.maxEntries ?? PRINCIPAL_CACHE_MAX);
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
    clearTimeout(this.#touchTimer); // informational: a refresh not written yet is dropped
    this.#touchTimer = undefined;
    this.#touch.clear();
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
    const principal = await this.#lookup(tokenHash, kind);
    if (principal && this.#caching && generation === this.#generation) {
      while (this.#principals.size >= this.#max)
        this.#principals.delete(this.#principals.keys().next().value!);
      this.#principals.set(key, { principal, until: Date.now() + CACHE_TTL_MS });
    }
    return principal;
  }

  /**
   * Reads a principal from the database. Lookups that miss the cache in the same turn of the
   * event loop, or while the previous read is in flight (a reconnecting fleet's upgrades, a
   * burst of requests), share one statement: `token_hash = any($1)`, with the same
   * `revoked_at is null` check per token as alone.
   */
  #lookup(tokenHash: string, kind: TokenKind): Promise<Principal | undefined> {
    return new Promise((resolve, reject) => {
      const waiting = this.#misses.get(tokenHash);
      if (waiting) waiting.push({ kind, resolve, reject });
      else this.#misses.set(tokenHash, [{ kind, resolve, reject }]);
      if (this.#misses.size === 1 && waiting === undefined && !this.#reading)
        setImmediate(() => void this.#readMisses());
    });
  }

  async #readMisses(): Promise<void> {
    if (this.#reading || this.#misses.size === 0) return;
    const misses = this.#misses;
    this.#misses = new Map();
    this.#reading = true;
    try {
      await this.#read(misses);
    } finally {
      this.#reading = false;
      if (this.#misses.size > 0) setImmediate(() => void this.#readMisses());
    }
  }

  async #read(
    misses: Map<
      string,
      Array<{ kind: TokenKind; resolve: (p: Principal | undefined) => void; reject: (e: unknown) => void }>
    >,
  ): Promise<void> {
    let rows: Array<{
      id: string;
      kind: TokenKind;
      workstation_id: string | null;
      token_hash: string;
      stale: boolean;
    }>;
    try {
      // On the priority lane: every agent request, lease renewals included, waits for this read,
      // and a renewal must not queue behind the work it protects (issue 8, defect 10). One
      // indexed read, and on cache misses only.
      rows = (
        await this.db.priority.query<{
          id: string;
          kind: TokenKind;
          workstation_id: string | null;
          token_hash: string;
          stale: boolean;
        }>(
          `select id, kind, workstation_id, token_hash,
                  (last_used_at is null or last_used_at < now() - interval '60 seconds') as stale
             from credentials where token_hash = any($1::text[]) and revoked_at is null`,
          [[...misses.keys()]],
        )
      ).rows;
    } catch (e) {
      for (const waiters of misses.values()) for (const w of waiters) w.reject(e);
      return;
    }
    const byHash = new Map(rows.map((row) => [row.token_hash, row]));
    for (const [hash, waiters] of misses) {
      const row = byHash.get(hash);
      for (const w of waiters) {
        if (!row || row.kind !== w.kind) {
          w.resolve(undefined);
          continue;
        }
        w.resolve(
          row.workstation_id
            ? { kind: row.kind, id: row.id, workstationId: row.workstation_id }
            : { kind: row.kind, id: row.id },
        );
      }
    }
    // last_used_at is informational: refresh it at most once a minute, off the request path, the
    // stale ones of a second in one statement.
    for (const row of rows) if (row.stale) this.#touch.add(row.id);
    if (this.#touch.size > 0 && !this.#touchTimer) {
      this.#touchTimer = setTimeout(() => {
        this.#touchTimer = undefined;
        const ids = [...this.#touch];
        this.#touch.clear();
        void this.db
          .query('update credentials set last_used_at = now() where id = any($1::text[])', [ids])
          .catch(() => {});
      }, TOUCH_EVERY_MS);
      this.#touchTimer.unref();
    }
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
