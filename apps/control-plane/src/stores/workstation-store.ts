import { randomUUID } from 'node:crypto';
import type { Database, Listener, Queryable } from '@runt/sql';
import { hashToken, mintToken, type Principal, type TokenKind } from '@runt/transport-auth';
import { withdrawAllFrom } from '../runs/transitions.js';
import { WORKSTATION_OFFLINE_AFTER_SECONDS, type Credential, type RegisterWorkstationRequest, type Workstation } from '@runt/protocol';

interface WorkstationRow {
  id: string;
  display_name: string;
  hostname: string | null;
  cpu_count: number | null;
  memory_bytes: number | string | null;
  max_runs: number | null;
  runtimes: string[];
  labels: Record<string, string>;
  agent_version: string | null;
  listening: boolean;
  status: Workstation['status'];
  last_seen_at: Date | string | null;
  created_at: Date | string;
}

/** Postgres channel every credential change notifies, with the credential id as payload. */
export const CREDENTIALS_CHANNEL = 'runt_credentials';
/** Cached principals at most; the least recently used go first. */
const CACHE_MAX = 10_000;
/** Re-read every 30 s anyway (a bound if all else failed; also keeps last_used_at within its minute). */
const CACHE_TTL_MS = 30_000;

const iso = (v: Date | string | null): string | null => (v === null ? null : new Date(v).toISOString());

// Status is derived, never stored: revoked when no live credential is left, online while
// heard from within the window, offline otherwise, and offline at once when the agent's link
// dropped (until it registers again over a link or over HTTP).
const SELECT_WORKSTATION = `
select w.*,
  case
    when not exists (select 1 from credentials c where c.workstation_id = w.id and c.revoked_at is null) then 'revoked'
    when w.last_seen_at is null or w.last_seen_at < now() - make_interval(secs => ${WORKSTATION_OFFLINE_AFTER_SECONDS}) then 'offline'
    when w.link_state = 'dropped' then 'offline'
    when w.draining then 'draining'
    else 'online'
  end as status
from workstations w`;

function toWorkstation(r: WorkstationRow): Workstation {
  return {
    id: r.id,
    display_name: r.display_name,
    hostname: r.hostname,
    status: r.status,
    listening: r.listening,
    last_seen_at: iso(r.last_seen_at),
    cpu_count: r.cpu_count,
    memory_bytes: r.memory_bytes === null ? null : Number(r.memory_bytes),
    max_runs: r.max_runs,
    runtimes: r.runtimes,
    labels: r.labels,
    agent_version: r.agent_version,
    created_at: iso(r.created_at)!,
  };
}

/**
 * Workstations and their credentials in SQL. Tokens are stored only as SHA-256 hashes; the
 * secret leaves this module once, in the return value of {@link WorkstationStore.createPaired}.
 */
export class WorkstationStore {
  /**
   * Resolved principals (never misses), bounded: least recently used evicted past
   * {@link CACHE_MAX}, every entry re-read after {@link CACHE_TTL_MS}.
   *
   * - Embedded PGlite: this process is the only writer of `credentials`, and every change goes
   *   through this store, which drops the entries it changes.
   * - Postgres: several replicas share the table. Every change notifies
   *   {@link CREDENTIALS_CHANNEL} with the credential id in the same statement/transaction, and
   *   each replica LISTENs on a dedicated connection and drops that credential's entries. While
   *   that connection is down (or before it is up) nothing is served from or put in the cache,
   *   and it starts empty once it is back, so a missed notification can never keep a revoked
   *   token alive.
   */
  readonly #principals = new Map<string, { principal: Principal; until: number }>();
  /** PGlite: always; Postgres: only while the LISTEN connection is up. */
  #caching: boolean;
  /** Bumped by every credential change: a lookup that overlapped one is not cached. */
  #generation = 0;
  #listener: Listener | undefined;
  #reconnect: NodeJS.Timeout | undefined;
  #closed = false;
  #stats = { hits: 0, misses: 0, listenLost: 0 };
  /** Told about every credential changed by another replica (or this one), by id. */
  onCredentialChanged: ((credentialId: string) => void) | undefined;

  constructor(
    private readonly db: Database,
    private readonly opts: { relistenMs?: number; onListenError?: (err: Error | undefined, lost: boolean) => void } = {},
  ) {
    this.#caching = db.backend === 'pglite';
  }

  /**
   * Postgres: starts listening for credential changes, after which the cache is used. Without
   * it (or on a `Database` without `listen`) every request reads its credential. Resolves once
   * the first attempt is done, whether it succeeded or a retry was scheduled.
   */
  async startInvalidation(): Promise<void> {
    if (this.db.backend !== 'postgres' || !this.db.listen || this.#closed) return;
    try {
      const listener = await this.db.listen(CREDENTIALS_CHANNEL, (payload) => this.#forget(payload || undefined, true), (err) => this.#lost(err));
      if (this.#closed) return void (await listener.close());
      this.#listener = listener;
      // Whatever was read before LISTEN was up may have missed a change: start empty.
      this.#forget();
      this.#caching = true;
    } catch (e) {
      this.opts.onListenError?.(e as Error, false);
      this.#scheduleRelisten();
    }
  }

  #lost(err: Error | undefined): void {
    this.#caching = false;
    this.#listener = undefined;
    this.#stats.listenLost++;
    this.#forget();
    this.opts.onListenError?.(err, true);
    this.#scheduleRelisten();
  }

  #scheduleRelisten(): void {
    if (this.#closed || this.#reconnect) return;
    this.#reconnect = setTimeout(() => {
      this.#reconnect = undefined;
      void this.startInvalidation();
    }, this.opts.relistenMs ?? 1000);
    this.#reconnect.unref();
  }

  /** Stops listening (the cache is then off on Postgres). Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.db.backend === 'postgres') this.#caching = false;
    clearTimeout(this.#reconnect);
    this.#reconnect = undefined;
    const l = this.#listener;
    this.#listener = undefined;
    await l?.close();
  }

  /** Cache counters and state, for tests and metrics. */
  credentialCache(): { enabled: boolean; size: number; hits: number; misses: number; listenLost: number } {
    return { enabled: this.#caching, size: this.#principals.size, ...this.#stats };
  }

  /**
   * Inside the pairing transaction: creates the workstation and its credential.
   * @returns the new workstation id and the one-time plaintext token
   */
  async createPaired(tx: Queryable, input: { displayName: string; hostname?: string; pairingId: string }) {
    const workstationId = `ws_${randomUUID()}`;
    const credentialId = `cred_${randomUUID()}`;
    const token = mintToken('workstation');
    await tx.query('insert into workstations (id, display_name, hostname, pairing_id) values ($1, $2, $3, $4)', [
      workstationId,
      input.displayName,
      input.hostname ?? null,
      input.pairingId,
    ]);
    await tx.query('insert into credentials (id, kind, token_hash, workstation_id) values ($1, $2, $3, $4)', [
      credentialId,
      'workstation',
      hashToken(token),
      workstationId,
    ]);
    await tx.query(`select pg_notify('${CREDENTIALS_CHANNEL}', $1)`, [credentialId]);
    return { workstationId, credentialId, token, displayName: input.displayName };
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
    const r = await this.db.query<{ id: string; kind: TokenKind; workstation_id: string | null; stale: boolean }>(
      `select id, kind, workstation_id,
              (last_used_at is null or last_used_at < now() - interval '60 seconds') as stale
         from credentials where token_hash = $1 and kind = $2 and revoked_at is null`,
      [tokenHash, kind],
    );
    const row = r.rows[0];
    if (!row) return undefined;
    // last_used_at is informational: refresh it at most once a minute, off the request path.
    if (row.stale) void this.db.query('update credentials set last_used_at = now() where id = $1', [row.id]).catch(() => {});
    const principal: Principal = row.workstation_id ? { kind: row.kind, id: row.id, workstationId: row.workstation_id } : { kind: row.kind, id: row.id };
    if (this.#caching && generation === this.#generation) {
      while (this.#principals.size >= CACHE_MAX) this.#principals.delete(this.#principals.keys().next().value!);
      this.#principals.set(key, { principal, until: Date.now() + CACHE_TTL_MS });
    }
    return principal;
  }

  /** Forgets cached principals (all, or one credential's) after a credential changed. */
  #forget(credentialId?: string, notified = false): void {
    this.#generation++;
    if (credentialId === undefined) this.#principals.clear();
    else for (const [key, entry] of this.#principals) if (entry.principal.id === credentialId) this.#principals.delete(key);
    if (notified && credentialId !== undefined) this.onCredentialChanged?.(credentialId);
  }

  /** Registration / heartbeat: the agent's report wins, updated in place. */
  async register(workstationId: string, body: RegisterWorkstationRequest): Promise<Workstation> {
    await this.db.query(
      `update workstations set display_name = $2, hostname = coalesce($3, hostname), cpu_count = $4, memory_bytes = $5,
         max_runs = coalesce($6, max_runs), runtimes = $7::jsonb, labels = $8::jsonb, agent_version = $9, listening = $10,
         last_seen_at = now(), registered_at = coalesce(registered_at, now()),
         link_state = case when link_state = 'dropped' then 'none' else link_state end,
         draining = draining and $10
       where id = $1`,
      [
        workstationId,
        body.display_name,
        body.hostname ?? null,
        body.cpu_count,
        body.memory_bytes ?? null,
        body.max_runs ?? null,
        JSON.stringify(body.runtimes),
        JSON.stringify(body.labels ?? {}),
        body.agent_version,
        body.listening,
      ],
    );
    const ws = await this.get(workstationId);
    if (!ws) throw new Error(`workstation ${workstationId} vanished`);
    return ws;
  }

  /**
   * Drain (admin): nothing more is offered to the workstation, and runs offered to it but not
   * yet claimed go back to the queue. Draining ends when its agent registers with
   * `listening: false` (it stopped taking work), so the next agent that starts is online again.
   * Returns undefined for an unknown workstation.
   *
   * @example
   * const ws = await workstations.drain('ws_1'); // ws.status === 'draining' while it is online
   */
  async drain(workstationId: string): Promise<{ workstation: Workstation; withdrawn: number } | undefined> {
    const withdrawn = await this.db.transaction(async (tx) => {
      const r = await tx.query('update workstations set draining = true where id = $1', [workstationId]);
      if (r.rowCount === 0) return undefined;
      return withdrawAllFrom(tx, workstationId);
    });
    if (withdrawn === undefined) return undefined;
    const workstation = await this.get(workstationId);
    return workstation ? { workstation, withdrawn } : undefined;
  }

  /**
   * Registration over the agent link: the same update as {@link register}, plus the link's
   * replica, so the workstation is online (and schedulable by this replica) at once.
   *
   * @example
   * await workstations.linkRegistered('ws_1', body, 'cp-1');
   */
  async linkRegistered(workstationId: string, body: RegisterWorkstationRequest, replicaId: string): Promise<Workstation> {
    await this.db.query(`update workstations set link_state = 'connected', link_replica = $2, link_connected_at = now() where id = $1`, [
      workstationId,
      replicaId,
    ]);
    return this.register(workstationId, body);
  }

  /**
   * The link of this replica dropped: offline at once, nothing more is offered to it. A newer
   * link on another replica is left alone.
   *
   * @example
   * await workstations.linkDropped('ws_1', 'cp-1');
   */
  async linkDropped(workstationId: string, replicaId: string): Promise<void> {
    await this.db.query(
      `update workstations set link_state = 'dropped', link_replica = null, listening = false
        where id = $1 and (link_replica = $2 or link_replica is null)`,
      [workstationId, replicaId],
    );
  }

  /** A live link counts as a heartbeat: one statement refreshes every linked workstation. */
  async touchLinked(workstationIds: string[]): Promise<void> {
    if (workstationIds.length === 0) return;
    await this.db.query('update workstations set last_seen_at = now() where id = any($1::text[])', [workstationIds]);
  }

  /** Which of these credentials have been revoked (maybe by another replica). */
  async revokedAmong(credentialIds: string[]): Promise<string[]> {
    if (credentialIds.length === 0) return [];
    const r = await this.db.query<{ id: string }>('select id from credentials where id = any($1::text[]) and revoked_at is not null', [
      credentialIds,
    ]);
    return r.rows.map((x) => x.id);
  }

  async get(id: string): Promise<Workstation | undefined> {
    const r = await this.db.query<WorkstationRow>(`${SELECT_WORKSTATION} where w.id = $1`, [id]);
    return r.rows[0] ? toWorkstation(r.rows[0]) : undefined;
  }

  async list(): Promise<Workstation[]> {
    const r = await this.db.query<WorkstationRow>(`${SELECT_WORKSTATION} order by w.created_at, w.id`);
    return r.rows.map(toWorkstation);
  }

  /** Has the workstation paired through this code registered yet? */
  async registeredByPairing(pairingId: string): Promise<{ id: string; registered: boolean } | undefined> {
    const r = await this.db.query<{ id: string; registered_at: Date | null }>(
      'select id, registered_at from workstations where pairing_id = $1',
      [pairingId],
    );
    const row = r.rows[0];
    return row ? { id: row.id, registered: row.registered_at !== null } : undefined;
  }

  async listCredentials(): Promise<Credential[]> {
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
    return r.rows.map((c) => ({ ...c, created_at: iso(c.created_at)!, last_used_at: iso(c.last_used_at), revoked_at: iso(c.revoked_at) }));
  }

  /** Revokes a credential at once; idempotent. Returns undefined for an unknown id. */
  async revokeCredential(id: string): Promise<Credential | undefined> {
    this.#forget(id);
    await this.db.query(
      `with c as (update credentials set revoked_at = coalesce(revoked_at, now()) where id = $1 returning id)
       select pg_notify('${CREDENTIALS_CHANNEL}', id) from c`,
      [id],
    );
    this.#forget(id);
    return (await this.listCredentials()).find((c) => c.id === id);
  }

  /**
   * Makes sure an admin credential exists. With `token` (RUNT_ADMIN_TOKEN) its hash becomes the
   * `admin-env` credential; otherwise a generated one is kept as `admin`. Returns a freshly
   * minted token only when it had to mint one (the caller writes it to a 0600 file).
   */
  async ensureAdmin(opts: { token?: string; regenerate?: boolean }): Promise<{ minted?: string }> {
    this.#forget();
    if (opts.token) {
      await this.db.query(
        `with c as (insert into credentials (id, kind, token_hash) values ('admin-env', 'admin', $1)
           on conflict (id) do update set token_hash = excluded.token_hash, revoked_at = null returning id)
         select pg_notify('${CREDENTIALS_CHANNEL}', id) from c`,
        [hashToken(opts.token)],
      );
      this.#forget();
      return {};
    }
    const existing = await this.db.query(`select 1 from credentials where id = 'admin' and revoked_at is null`);
    if (existing.rows.length > 0 && !opts.regenerate) return {};
    const token = mintToken('admin');
    await this.db.query(
      `with c as (insert into credentials (id, kind, token_hash) values ('admin', 'admin', $1)
         on conflict (id) do update set token_hash = excluded.token_hash, revoked_at = null, created_at = now() returning id)
       select pg_notify('${CREDENTIALS_CHANNEL}', id) from c`,
      [hashToken(token)],
    );
    this.#forget();
    return { minted: token };
  }
}
