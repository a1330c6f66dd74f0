import { randomUUID } from 'node:crypto';
import { leaseSql, releaseLease } from '@runt/leases';
import type { Database, Queryable } from '@runt/sql';
import { isTerminalRunStatus, type FailureKind, type Run, type RunStatus, type submitRunRequestSchema } from '@runt/protocol';
import type { z } from 'zod';
import { runPathMetrics } from '../metrics.js';
import { RunError, runNotActive } from '../runs/run-error.js';
import type { CommandStore } from './command-store.js';
import type { EventStore } from './event-store.js';
import { SELECT_RUN, toRun, type RunRow } from './run-row.js';

/** A validated submit body (defaults applied). */
export type SubmitRunInput = z.output<typeof submitRunRequestSchema>;

/** The columns the fenced paths need, read (and locked) without the lease join. */
export interface RunState {
  id: string;
  status: RunStatus;
  workstation_id: string | null;
  lease_holder: string | null;
  fencing_token: number | null;
  cancel_requested: boolean;
  next_event_seq: number;
  attempt: number;
  max_attempts: number;
}

/** How a run ended when its runner went away. */
export type LostOutcome = 'requeued' | 'failed' | 'cancelled';

export interface ListRunsFilter {
  status?: RunStatus;
  workstation_id?: string;
  runtime?: string;
  limit: number;
  cursor?: string;
}

const STATE_COLUMNS = 'id, status, workstation_id, lease_holder, fencing_token, cancel_requested, next_event_seq, attempt, max_attempts';

const toState = (r: Record<string, unknown>): RunState => ({
  ...(r as unknown as RunState),
  fencing_token: r.fencing_token === null ? null : Number(r.fencing_token),
  next_event_seq: Number(r.next_event_seq),
});

const encodeCursor = (position: number | string) => Buffer.from(`p:${position}`).toString('base64url');
function decodeCursor(cursor: string): number {
  const m = /^p:(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m) throw new RunError('invalid-request', 'cursor: not a cursor from next_cursor');
  return Number(m[1]);
}

/** A batch of holder events, already checked to be contiguous (`first`..`last`), as JSON for `jsonb_to_recordset`. */
export interface EventBatch {
  first: number;
  last: number;
  json: string;
}

/** What a terminal report records. */
export interface TerminalOutcome {
  status: 'completed' | 'failed' | 'cancelled' | 'blocked';
  exitCode?: number;
  failureKind?: FailureKind;
  message?: string;
}

// The lease claim of `@runt/leases` folded into one statement with the run's
// `offered → accepted`, so a claim is one round trip. The lease rules are leases' own SQL.
const CLAIM_FAST_SQL = `
with l as (
  ${leaseSql.claim({
    resource: '$1',
    holder: '$3',
    ttlMs: '$4',
    when: `exists (select 1 from runs where id = $1 and workstation_id = $2 and status in ('offered', 'accepted', 'running'))`,
  })}
), u as (
  update runs r set status = case when r.status = 'offered' then 'accepted' else r.status end, accepted_at = coalesce(r.accepted_at, now()),
         lease_holder = l.holder, fencing_token = l.fencing_token
    from l where r.id = $1 and r.workstation_id = $2 and r.status in ('offered', 'accepted', 'running')
  returning r.*
)
select u.*, l.fencing_token as granted, l.holder as l_holder, l.fencing_token as l_token, l.expires_at as l_expires_at,
       exists (select 1 from run_commands c where c.run_id = $1 and c.state = 'pending') as pending_commands
from l left join u on true`;

// The fenced guard every fast write puts in its UPDATE: the run is this workstation's, active,
// carries the presented token, and the lease with that token is held and live by the database
// clock. The UPDATE locks the run row; a claim of an expired lease must update the same row, so
// it cannot slip in between. $1 run id, $2 workstation id, $3 fencing token.
const FENCED_GUARD = `r.id = $1 and r.workstation_id = $2 and r.fencing_token = $3
  and ${leaseSql.heldWithToken({ resource: '$1', token: '$3' })}`;

// Holder events ($4 first seq, $5 last seq + 1, $6 JSON): resends (seq below the stored next)
// hit the primary key and are dropped; the guard's `next_event_seq >= $4` refuses a gap.
const INSERT_EVENTS = `insert into run_events (run_id, seq, type, payload, at)
  select $1, e.seq, e.type, e.payload, coalesce(e.at, now())
    from jsonb_to_recordset($6::jsonb) as e(seq bigint, type text, payload jsonb, at timestamptz)
   where exists (select 1 from u)
  on conflict (run_id, seq) do nothing`;

const APPEND_FAST_SQL = `
with u as (
  update runs r set next_event_seq = greatest(r.next_event_seq, $5)
   where ${FENCED_GUARD} and r.status in ('accepted', 'running') and r.next_event_seq >= $4
  returning r.next_event_seq
), e as (${INSERT_EVENTS})
select next_event_seq from u`;

const RUNNING_FAST_SQL = `
with u as (
  update runs r set status = 'running', started_at = now(), next_event_seq = greatest(r.next_event_seq, $5)
   where ${FENCED_GUARD} and r.status = 'accepted' and r.next_event_seq >= $4
  returning r.*
), e as (${INSERT_EVENTS})
select u.*, l.holder as l_holder, l.fencing_token as l_token, l.expires_at as l_expires_at
  from u left join leases l on l.resource = u.id and l.holder is not null`;

// Terminal: the events, then `terminal_status` at the next seq, open commands cancelled and the
// lease given up, all in the one statement (so in one transaction).
const FINISH_FAST_SQL = `
with u as (
  update runs r set status = $7, exit_code = $8, failure_kind = $9, failure_message = $10, finished_at = now(),
         next_event_seq = greatest(r.next_event_seq, $5) + 1
   where ${FENCED_GUARD} and r.status in ('accepted', 'running') and r.next_event_seq >= $4
  returning r.*
), e as (
  insert into run_events (run_id, seq, type, payload, at)
  select $1, e.seq, e.type, e.payload, coalesce(e.at, now())
    from jsonb_to_recordset($6::jsonb) as e(seq bigint, type text, payload jsonb, at timestamptz)
   where exists (select 1 from u)
  union all
  select $1, u.next_event_seq - 1, 'terminal_status', $11::jsonb, now() from u
  on conflict (run_id, seq) do nothing
), c as (
  update run_commands set state = 'cancelled', finished_at = now() where run_id = $1 and state in ('pending', 'acked') and exists (select 1 from u)
), l as (${leaseSql.release({ resource: '$1', holder: 'u.lease_holder', token: '$3', from: 'u' })})
select u.*, null as l_holder, null as l_token, null as l_expires_at from u`;

const INSERT_RUN = `insert into runs (id, status, runtime, image, command, env, workdir, ready_when, placement_workstation_id, placement_labels,
                           cpus, memory_bytes, bundle_sha256, max_attempts, idempotency_key)
         values ($1, 'queued', $2, $3, $4::jsonb, $5::jsonb, $6, $7::jsonb, $8, $9::jsonb, $10, $11, $12, $13, $14)`;

const insertParams = (input: SubmitRunInput, key: string | null): unknown[] => [
  `run_${randomUUID()}`,
  input.runtime,
  input.image ?? null,
  JSON.stringify(input.command),
  JSON.stringify(input.env),
  input.workdir ?? null,
  input.ready_when ? JSON.stringify(input.ready_when) : null,
  input.placement.workstation_id ?? null,
  JSON.stringify(input.placement.labels ?? {}),
  input.resources.cpus ?? null,
  input.resources.memory_bytes ?? null,
  input.bundle?.sha256 ?? null,
  input.max_attempts,
  key,
];

const eventParams = (b: EventBatch | undefined) => (b ? [b.first, b.last + 1, b.json] : [0, 0, '[]']);

/** The payload of a `terminal_status` event. */
export function terminalPayload(f: TerminalOutcome): Record<string, unknown> {
  return {
    status: f.status,
    ...(f.exitCode === undefined ? {} : { exit_code: f.exitCode }),
    ...(f.failureKind ? { failure_kind: f.failureKind } : {}),
    ...(f.message ? { message: f.message } : {}),
  };
}

/**
 * Runs in SQL: submit, read, list, cancel, and the transitions that end an attempt. Every
 * transition is a guarded `update … where status …` or happens under the run row's lock, so a
 * run only ever moves forward, also with several control-plane processes on one Postgres.
 */
export class RunStore {
  constructor(
    private readonly db: Database,
    private readonly events: EventStore,
    private readonly commands: CommandStore,
  ) {}

  /**
   * Inserts a queued run. With an `idempotency_key` seen within 24 h the existing run is
   * returned (`created: false`) instead.
   *
   * @example
   * const { run } = await runs.submit(submitRunRequestSchema.parse({ runtime: 'fake', command: ['true'] }));
   */
  async submit(input: SubmitRunInput): Promise<{ run: Run; created: boolean }> {
    if (!input.idempotency_key) {
      // Without a key nothing can collide: one statement, and the new row is the answer.
      const r = await this.db.query<RunRow>(`${INSERT_RUN} returning *, null as l_holder, null as l_token, null as l_expires_at`, insertParams(input, null));
      return { run: toRun(r.rows[0]!), created: true };
    }
    const id = await this.db.transaction(async (tx) => {
      const key = input.idempotency_key ?? null;
      if (key) {
        await tx.query(`update runs set idempotency_key = null where idempotency_key = $1 and created_at < now() - interval '24 hours'`, [key]);
      }
      const r = await tx.query<{ id: string }>(
        `${INSERT_RUN} on conflict (idempotency_key) where idempotency_key is not null do nothing returning id`,
        insertParams(input, key),
      );
      if (r.rows[0]) return { id: r.rows[0].id, created: true };
      const existing = await tx.query<{ id: string }>('select id from runs where idempotency_key = $1', [key]);
      return { id: existing.rows[0]!.id, created: false };
    });
    return { run: (await this.get(id.id))!, created: id.created };
  }

  /** One run with its lease, or undefined. */
  async get(id: string, q: Queryable = this.db): Promise<Run | undefined> {
    const r = await q.query<RunRow>(`${SELECT_RUN} where r.id = $1`, [id]);
    return r.rows[0] ? toRun(r.rows[0]) : undefined;
  }

  /** Several runs by id (order not kept). */
  async getMany(ids: string[]): Promise<Run[]> {
    if (ids.length === 0) return [];
    const r = await this.db.query<RunRow>(`${SELECT_RUN} where r.id = any($1::text[])`, [ids]);
    return r.rows.map(toRun);
  }

  /** The fenced paths' view of a run; `lock` takes the row lock inside `q`'s transaction. */
  async state(id: string, q: Queryable = this.db, lock = false): Promise<RunState | undefined> {
    const r = await q.query<Record<string, unknown>>(`select ${STATE_COLUMNS} from runs where id = $1${lock ? ' for update' : ''}`, [id]);
    return r.rows[0] ? toState(r.rows[0]) : undefined;
  }

  /**
   * Newest first, filtered, paged by an opaque cursor (`next_cursor` is null on the last page).
   *
   * @example
   * const page = await runs.list({ status: 'queued', limit: 50 });
   */
  async list(filter: ListRunsFilter): Promise<{ runs: Run[]; next_cursor: string | null }> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, v: unknown) => {
      params.push(v);
      where.push(sql.replace('?', `$${params.length}`));
    };
    if (filter.status) add('r.status = ?', filter.status);
    if (filter.workstation_id) add('r.workstation_id = ?', filter.workstation_id);
    if (filter.runtime) add('r.runtime = ?', filter.runtime);
    if (filter.cursor) add('r.position < ?', decodeCursor(filter.cursor));
    params.push(filter.limit + 1);
    const r = await this.db.query<RunRow>(
      `${SELECT_RUN} ${where.length ? `where ${where.join(' and ')}` : ''} order by r.position desc limit $${params.length}`,
      params,
    );
    const page = r.rows.slice(0, filter.limit);
    const more = r.rows.length > filter.limit;
    return { runs: page.map(toRun), next_cursor: more ? encodeCursor(page[page.length - 1]!.position) : null };
  }

  /**
   * Cancels a run: queued or offered ones end at once; accepted or running ones get
   * `cancel_requested` and end when their agent reports `cancelled`. A terminal run answers
   * 409 `run-not-active`; asking twice is harmless.
   *
   * @example
   * const { run, immediate } = await runs.cancel('run_1');
   */
  async cancel(id: string): Promise<{ run: Run; immediate: boolean; workstationId: string | null } | undefined> {
    const out = await this.db.transaction(async (tx) => {
      const s = await this.state(id, tx, true);
      if (!s) return undefined;
      if (isTerminalRunStatus(s.status)) throw runNotActive();
      if (s.status === 'queued' || s.status === 'offered') {
        await tx.query('update runs set cancel_requested = true where id = $1', [id]);
        await this.finish(tx, id, { status: 'cancelled', failureKind: 'cancelled', message: 'cancelled before it started' });
        return { immediate: true, workstationId: s.workstation_id };
      }
      await tx.query('update runs set cancel_requested = true where id = $1', [id]);
      return { immediate: false, workstationId: s.workstation_id };
    });
    if (!out) return undefined;
    return { run: (await this.get(id))!, ...out };
  }

  /**
   * The common claim in one statement: takes the lease and moves `offered → accepted`.
   * `undefined` when it did not apply (lease held by another, run not offered to this
   * workstation, …): the caller then takes the checked path, which answers the right error.
   * When the lease was granted but the run changed under it, the lease is given back first.
   */
  async claimFast(runId: string, workstationId: string, holder: string, leaseMs: number): Promise<
    { run: Run; fencingToken: number; expiresAt: string; nextEventSeq: number; pendingCommands: boolean } | undefined
  > {
    const r = await this.db.query<RunRow & { granted: number | string | null; pending_commands: boolean }>(CLAIM_FAST_SQL, [runId, workstationId, holder, leaseMs]);
    const row = r.rows[0];
    if (!row) return undefined;
    if (row.id === null || row.id === undefined) {
      await releaseLease(this.db, runId, holder, Number(row.granted));
      return undefined;
    }
    const run = toRun(row);
    return { run, fencingToken: run.lease!.fencing_token, expiresAt: run.lease!.expires_at, nextEventSeq: Number(row.next_event_seq), pendingCommands: row.pending_commands };
  }

  /**
   * A holder's event batch in one fenced statement; the new next seq, or `undefined` when the
   * guard did not pass (the caller takes the checked path for the exact answer).
   */
  async appendFast(runId: string, workstationId: string, token: number, batch: EventBatch): Promise<number | undefined> {
    const r = await this.db.query<{ next_event_seq: number | string }>(APPEND_FAST_SQL, [runId, workstationId, token, ...eventParams(batch)]);
    return r.rows[0] ? Number(r.rows[0].next_event_seq) : undefined;
  }

  /** `accepted → running` with optional events, in one fenced statement; `undefined` when the guard did not pass. */
  async runningFast(runId: string, workstationId: string, token: number, batch?: EventBatch): Promise<{ run: Run; nextEventSeq: number } | undefined> {
    const r = await this.db.query<RunRow>(RUNNING_FAST_SQL, [runId, workstationId, token, ...eventParams(batch)]);
    const row = r.rows[0];
    return row ? { run: toRun(row), nextEventSeq: Number(row.next_event_seq) } : undefined;
  }

  /**
   * A terminal report in one fenced statement: optional events, the outcome, `terminal_status`,
   * open commands cancelled, lease released. `undefined` when the guard did not pass.
   */
  async finishFast(runId: string, workstationId: string, token: number, f: TerminalOutcome, batch?: EventBatch): Promise<{ run: Run; nextEventSeq: number } | undefined> {
    const r = await this.db.query<RunRow>(FINISH_FAST_SQL, [
      runId,
      workstationId,
      token,
      ...eventParams(batch),
      f.status,
      f.exitCode ?? null,
      f.failureKind ?? null,
      f.message ?? null,
      JSON.stringify(terminalPayload(f)),
    ]);
    const row = r.rows[0];
    return row ? { run: toRun(row), nextEventSeq: Number(row.next_event_seq) } : undefined;
  }

  /**
   * Moves a locked, active run to a terminal status inside the caller's transaction: records
   * the outcome, appends the `terminal_status` event and cancels its unfinished commands.
   *
   * @example
   * await runs.finish(tx, id, { status: 'completed', exitCode: 0 });
   */
  async finish(
    tx: Queryable,
    id: string,
    f: { status: 'completed' | 'failed' | 'cancelled' | 'blocked'; exitCode?: number; failureKind?: FailureKind; message?: string },
  ): Promise<void> {
    await tx.query(
      `update runs set status = $2, exit_code = $3, failure_kind = $4, failure_message = $5, finished_at = now() where id = $1`,
      [id, f.status, f.exitCode ?? null, f.failureKind ?? null, f.message ?? null],
    );
    await this.events.appendSystem(tx, id, 'terminal_status', terminalPayload(f));
    await this.commands.cancelOpen(tx, id);
  }

  /**
   * Ends the attempt of a locked run whose runner went away (lease expired or released):
   * a cancel-requested run is cancelled; a run that never reached `running` is re-queued with
   * `attempt + 1` while attempts remain; anything else fails with `runner-lost`, so a run that
   * was running is never started twice.
   *
   * @example
   * const outcome = await runs.loseRunner(tx, state, 'the lease expired');
   */
  async loseRunner(tx: Queryable, s: RunState, message: string): Promise<LostOutcome> {
    if (s.cancel_requested) {
      await this.finish(tx, s.id, { status: 'cancelled', failureKind: 'cancelled', message: `cancelled; ${message}` });
      return 'cancelled';
    }
    if (s.status === 'accepted' && s.attempt < s.max_attempts) {
      await tx.query(
        `update runs set status = 'queued', attempt = attempt + 1, workstation_id = null, lease_holder = null, fencing_token = null,
                         offered_at = null, accepted_at = null where id = $1`,
        [s.id],
      );
      await this.events.appendSystem(tx, s.id, 'error', { message: `${message}; re-queued`, failure_kind: 'runner-lost', attempt: s.attempt });
      runPathMetrics.requeues.inc({ reason: 'runner-lost' });
      return 'requeued';
    }
    await this.finish(tx, s.id, { status: 'failed', failureKind: 'runner-lost', message });
    return 'failed';
  }

  /**
   * Offers nobody claimed within `timeoutMs` go back to the queue (no attempt is used up).
   * Returns the runs and the workstations they had been offered to.
   *
   * @example
   * const back = await runs.requeueStaleOffers(30_000);
   */
  async requeueStaleOffers(timeoutMs: number): Promise<Array<{ id: string; workstation_id: string | null }>> {
    const r = await this.db.query<{ id: string; workstation_id: string | null }>(
      `with stale as (
         select id, workstation_id from runs where status = 'offered' and offered_at < now() - $1::float8 * interval '1 millisecond'
         order by offered_at limit 500 for update skip locked
       )
       update runs r set status = 'queued', workstation_id = null, offered_at = null from stale
       where r.id = stale.id returning stale.id, stale.workstation_id`,
      [timeoutMs],
    );
    runPathMetrics.requeues.inc({ reason: 'offer-timeout' }, r.rows.length);
    return r.rows;
  }

  /** Puts an offered run back in the queue when its workstation declines it. */
  async withdrawOffer(id: string, workstationId: string): Promise<boolean> {
    const r = await this.db.query(
      `update runs set status = 'queued', workstation_id = null, offered_at = null where id = $1 and status = 'offered' and workstation_id = $2`,
      [id, workstationId],
    );
    runPathMetrics.requeues.inc({ reason: 'declined' }, r.rowCount);
    return r.rowCount > 0;
  }

  /** Runs offered to a workstation (re-sent when its agent registers again). */
  async offeredTo(workstationId: string): Promise<Run[]> {
    const r = await this.db.query<RunRow>(`${SELECT_RUN} where r.workstation_id = $1 and r.status = 'offered' order by r.position`, [workstationId]);
    return r.rows.map(toRun);
  }

  /** Active runs of a workstation with a pending cancel (re-sent when its agent registers again). */
  async cancelRequestedOn(workstationId: string): Promise<string[]> {
    const r = await this.db.query<{ id: string }>(
      `select id from runs where workstation_id = $1 and status in ('accepted', 'running') and cancel_requested`,
      [workstationId],
    );
    return r.rows.map((x) => x.id);
  }
}
