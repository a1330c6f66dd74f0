import { randomUUID } from 'node:crypto';
import type { Database, Queryable } from '@runt/sql';
import {
  WORKSTATION_OFFLINE_AFTER_SECONDS,
  type RegisterWorkstationRequest,
  type Workstation,
} from '@runt/protocol';
import { withdrawAllFrom } from '../runs/transitions.js';
import type { CredentialStore } from './credential-store.js';

export interface WorkstationRow {
  id: string;
  display_name: string;
  hostname: string | null;
  cpu_count: number | null;
  memory_bytes: number | string | null;
  max_runs: number | null;
  prefetch: number;
  runtimes: string[];
  labels: Record<string, string>;
  agent_version: string | null;
  listening: boolean;
  status: Workstation['status'];
  last_seen_at: Date | string | null;
  created_at: Date | string;
}

const iso = (v: Date | string | null): string | null => (v === null ? null : new Date(v).toISOString());

// Status is derived, never stored: revoked when no live credential is left, online while
// heard from within the window, offline otherwise, and offline at once when the agent's link
// dropped (until it registers again over a link or over HTTP).
/** The derived status of workstation `w` (a SQL expression). */
export const WORKSTATION_STATUS_SQL = `case
    when not exists (select 1 from credentials c where c.workstation_id = w.id and c.revoked_at is null) then 'revoked'
    when w.last_seen_at is null or w.last_seen_at < now() - make_interval(secs => ${WORKSTATION_OFFLINE_AFTER_SECONDS}) then 'offline'
    when w.link_state = 'dropped' then 'offline'
    when w.draining then 'draining'
    else 'online'
  end`;

/** Every column of `workstations w` with its derived `status`; append `where w.…` or joins' columns' readers. */
export const SELECT_WORKSTATION = `
select w.*, ${WORKSTATION_STATUS_SQL} as status
from workstations w`;

export function toWorkstation(r: WorkstationRow): Workstation {
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
    prefetch: r.prefetch,
    runtimes: r.runtimes,
    labels: r.labels,
    agent_version: r.agent_version,
    created_at: iso(r.created_at)!,
  };
}

/**
 * Workstations in SQL: created by pairing (with their credential, from `CredentialStore`),
 * registered and refreshed by their agents, drained by the operator. Status is derived when
 * read. Credentials and the principal cache live in their own modules.
 */
export class WorkstationStore {
  constructor(
    private readonly db: Database,
    private readonly credentials: CredentialStore,
  ) {}

  /**
   * Inside the pairing transaction: creates the workstation and its credential.
   * @returns the new workstation id and the one-time plaintext token
   */
  async createPaired(tx: Queryable, input: { displayName: string; hostname?: string; pairingId: string }) {
    const workstationId = `ws_${randomUUID()}`;
    await tx.query(
      'insert into workstations (id, display_name, hostname, pairing_id) values ($1, $2, $3, $4)',
      [workstationId, input.displayName, input.hostname ?? null, input.pairingId],
    );
    const { credentialId, token } = await this.credentials.issue(tx, workstationId);
    return { workstationId, credentialId, token, displayName: input.displayName };
  }

  /** Registration / heartbeat: the agent's report wins, updated in place. */
  async register(workstationId: string, body: RegisterWorkstationRequest): Promise<Workstation> {
    await this.db.query(
      `update workstations set display_name = $2, hostname = coalesce($3, hostname), cpu_count = $4, memory_bytes = $5,
         max_runs = coalesce($6, max_runs), prefetch = coalesce($11, prefetch), runtimes = $7::jsonb, labels = $8::jsonb,
         agent_version = $9, listening = $10,
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
        body.prefetch ?? null,
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
  async drain(
    workstationId: string,
    /** Runs in the same transaction after the write (the caller publishes the `drain` there). */
    inTx?: (tx: Queryable) => Promise<void>,
  ): Promise<{ workstation: Workstation; withdrawn: number } | undefined> {
    const withdrawn = await this.db.transaction(async (tx) => {
      const r = await tx.query('update workstations set draining = true where id = $1', [workstationId]);
      if (r.rowCount === 0) return undefined;
      const n = await withdrawAllFrom(tx, workstationId);
      await inTx?.(tx);
      return n;
    });
    if (withdrawn === undefined) return undefined;
    const workstation = await this.get(workstationId);
    return workstation ? { workstation, withdrawn } : undefined;
  }

  /**
   * Undrain (admin): takes a drain back, so the workstation is offered runs again. An agent
   * that already heard the drain still finishes its runs and stops (the next one started is
   * online, as after any drain); this matters for a drain no agent has acted on yet. Returns
   * undefined for an unknown workstation.
   *
   * @example
   * const ws = await workstations.undrain('ws_1'); // ws.status === 'online' while its agent listens
   */
  async undrain(
    workstationId: string,
    /** Runs in the same transaction after the write (the caller publishes "capacity freed" there). */
    inTx?: (tx: Queryable) => Promise<void>,
  ): Promise<Workstation | undefined> {
    const found = await this.db.transaction(async (tx) => {
      const r = await tx.query('update workstations set draining = false where id = $1', [workstationId]);
      if (r.rowCount === 0) return false;
      await inTx?.(tx);
      return true;
    });
    return found ? this.get(workstationId) : undefined;
  }

  /**
   * Registration over the agent link: the same update as {@link register}, plus the link's
   * replica, so the workstation is online (and schedulable by this replica) at once.
   *
   * @example
   * await workstations.linkRegistered('ws_1', body, 'cp-1');
   */
  async linkRegistered(
    workstationId: string,
    body: RegisterWorkstationRequest,
    replicaId: string,
  ): Promise<Workstation> {
    await this.db.query(
      `update workstations set link_state = 'connected', link_replica = $2, link_connected_at = now() where id = $1`,
      [workstationId, replicaId],
    );
    return this.register(workstationId, body);
  }

  /**
   * Registration over many links at once (the links that registered in one turn of the event
   * loop, e.g. a fleet re-linking after a restart): for each, the same state as
   * {@link linkRegistered}, written in one statement. Answers, by workstation id, whether a drain
   * is pending for it (draining, still listening, credential live: what `status === 'draining'`
   * says right after a registration). A workstation listed twice keeps its last body.
   *
   * @example
   * const draining = await workstations.linkRegisteredMany([{ workstationId: 'ws_1', body }], 'cp-1');
   */
  async linkRegisteredMany(
    items: ReadonlyArray<{ workstationId: string; body: RegisterWorkstationRequest }>,
    replicaId: string,
  ): Promise<Map<string, { draining: boolean }>> {
    const last = new Map(items.map((i) => [i.workstationId, i.body]));
    const rows = [...last].map(([id, b]) => ({
      id,
      display_name: b.display_name,
      hostname: b.hostname ?? null,
      cpu_count: b.cpu_count,
      memory_bytes: b.memory_bytes ?? null,
      max_runs: b.max_runs ?? null,
      prefetch: b.prefetch ?? null,
      runtimes: b.runtimes,
      labels: b.labels ?? {},
      agent_version: b.agent_version,
      listening: b.listening,
    }));
    const r = await this.db.query<{ id: string; draining: boolean }>(
      `update workstations w set display_name = b.display_name, hostname = coalesce(b.hostname, w.hostname),
         cpu_count = b.cpu_count, memory_bytes = b.memory_bytes, max_runs = coalesce(b.max_runs, w.max_runs),
         prefetch = coalesce(b.prefetch, w.prefetch), runtimes = b.runtimes, labels = b.labels, agent_version = b.agent_version, listening = b.listening,
         last_seen_at = now(), registered_at = coalesce(w.registered_at, now()),
         link_state = 'connected', link_replica = $2, link_connected_at = now(),
         draining = w.draining and b.listening
       from jsonb_to_recordset($1::jsonb) as b(id text, display_name text, hostname text, cpu_count integer,
         memory_bytes bigint, max_runs integer, prefetch integer, runtimes jsonb, labels jsonb, agent_version text, listening boolean)
       where w.id = b.id
       returning w.id, w.draining and exists (select 1 from credentials c where c.workstation_id = w.id and c.revoked_at is null) as draining`,
      [JSON.stringify(rows), replicaId],
    );
    return new Map(r.rows.map((row) => [row.id, { draining: row.draining }]));
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
    await this.db.query('update workstations set last_seen_at = now() where id = any($1::text[])', [
      workstationIds,
    ]);
  }

  async get(id: string): Promise<Workstation | undefined> {
    const r = await this.db.query<WorkstationRow>(`${SELECT_WORKSTATION} where w.id = $1`, [id]);
    return r.rows[0] ? toWorkstation(r.rows[0]) : undefined;
  }

  /**
   * Every workstation, oldest first; with `runtimes`, only those offering one of them (a
   * queued run's why-queued reads only the workstations that could take it).
   *
   * @example
   * const docker = await workstations.list({ runtimes: ['docker'] });
   */
  async list(opts: { runtimes?: readonly string[] } = {}): Promise<Workstation[]> {
    const r = opts.runtimes
      ? await this.db.query<WorkstationRow>(
          `${SELECT_WORKSTATION} where w.runtimes ?| $1::text[] order by w.created_at, w.id`,
          [[...opts.runtimes]],
        )
      : await this.db.query<WorkstationRow>(`${SELECT_WORKSTATION} order by w.created_at, w.id`);
    return r.rows.map(toWorkstation);
  }

  /**
   * The runtimes the live (not revoked) workstations offer, sorted, each once: one aggregate,
   * no workstation rows.
   *
   * @example
   * await workstations.runtimesOffered(); // ['docker', 'process']
   */
  async runtimesOffered(): Promise<string[]> {
    const r = await this.db.query<{ runtimes: string[] | null }>(
      `select array_agg(distinct x order by x) as runtimes from workstations w, jsonb_array_elements_text(w.runtimes) as x
        where (${WORKSTATION_STATUS_SQL}) <> 'revoked'`,
    );
    return r.rows[0]?.runtimes ?? [];
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
}
