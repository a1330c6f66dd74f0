import type { Database, Queryable } from '@runt/sql';
import type { EventType, RunEvent, RunEventInput, RunStatus } from '@runt/protocol';
import { RunError } from './run-error.js';
import { iso } from './run-row.js';

interface EventRow {
  run_id: string;
  seq: number | string;
  type: EventType;
  payload: Record<string, unknown>;
  at: Date | string;
}

const toEvent = (r: EventRow): RunEvent => ({
  run_id: r.run_id,
  seq: Number(r.seq),
  type: r.type,
  payload: r.payload,
  at: iso(r.at)!,
});

const APPEND_SQL = `
insert into run_events (run_id, seq, type, payload, at)
select $1, e.seq, e.type, e.payload, coalesce(e.at, now())
from jsonb_to_recordset($2::jsonb) as e(seq bigint, type text, payload jsonb, at timestamptz)
on conflict (run_id, seq) do nothing`;

// The control plane's own events take the run's next seq in the same statement that bumps it.
const APPEND_SYSTEM_SQL = `
with s as (update runs set next_event_seq = next_event_seq + 1 where id = $1 returning next_event_seq - 1 as seq)
insert into run_events (run_id, seq, type, payload) select $1, s.seq, $2, $3::jsonb from s`;

/**
 * The append-only event log of each run. `seq` is gap-free per run: the holder sends events
 * numbered from the run's `next_event_seq`; events below it are a resend and are dropped, a
 * batch that does not continue exactly at it is refused with `event-seq-gap`.
 */
export class EventStore {
  constructor(private readonly db: Database) {}

  /**
   * Appends a holder's batch inside the caller's transaction, which must hold the run row
   * (`select … for update`) and pass its current `nextSeq`. Returns the new next seq.
   * Throws 409 `event-seq-gap` (details `{ next_event_seq }`) when the batch skips a seq.
   *
   * @example
   * const next = await events.append(tx, runId, 1, [{ seq: 1, type: 'log', payload: { stream: 'stdout', data: 'hi' } }]);
   */
  async append(tx: Queryable, runId: string, nextSeq: number, batch: RunEventInput[]): Promise<number> {
    const fresh = [...batch].sort((a, b) => a.seq - b.seq).filter((e) => e.seq >= nextSeq);
    if (fresh.length === 0) return nextSeq;
    let expected = nextSeq;
    for (const e of fresh) {
      if (e.seq !== expected) {
        throw new RunError('event-seq-gap', `expected event seq ${expected}, got ${e.seq}`, {
          next_event_seq: nextSeq,
        });
      }
      expected++;
    }
    await tx.query(APPEND_SQL, [
      runId,
      JSON.stringify(fresh.map((e) => ({ seq: e.seq, type: e.type, payload: e.payload, at: e.at ?? null }))),
    ]);
    await tx.query('update runs set next_event_seq = $2 where id = $1', [runId, expected]);
    return expected;
  }

  /**
   * One page of a run's events after `afterSeq`, with the run's status read first: when that
   * status is terminal, the page contains everything up to the terminal event (both were
   * written in one transaction). `undefined` for an unknown run.
   *
   * @example
   * const page = await events.list('run_1', 0, 100);
   */
  async list(
    runId: string,
    afterSeq: number,
    limit: number,
  ): Promise<{ events: RunEvent[]; status: RunStatus } | undefined> {
    const run = await this.db.query<{ status: RunStatus }>('select status from runs where id = $1', [runId]);
    const status = run.rows[0]?.status;
    if (!status) return undefined;
    const r = await this.db.query<EventRow>(
      'select run_id, seq, type, payload, at from run_events where run_id = $1 and seq > $2 order by seq limit $3',
      [runId, afterSeq, limit],
    );
    return { events: r.rows.map(toEvent), status };
  }

  /** {@link listEventsJson} on this store's database. */
  listJson(runId: string, afterSeq: number, limit: number): Promise<EventPageJson | undefined> {
    return listEventsJson(this.db, runId, afterSeq, limit);
  }
}

/**
 * One page of events as the database serialises them: each event's JSON (`run_id`, `seq`,
 * `type`, `payload`, `at` as an ISO date-time with milliseconds, like {@link EventStore.list})
 * is made by the database from the stored `jsonb`, so the answer is written out without parsing
 * the payloads into objects and stringifying them again.
 */
export interface EventPageJson {
  events: Array<{ seq: number; json: string }>;
  status: RunStatus;
}

// The run's status and the page of its events in one statement (one snapshot, one round trip:
// a live log's follower sends this after every append it is woken for). No row: no such run.
const LIST_JSON_SQL = `
select r.status, e.seq, e.json
  from runs r
  left join lateral (
    select seq, json_build_object('run_id', run_id, 'seq', seq, 'type', type, 'payload', payload,
             'at', to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))::text as json
      from run_events where run_id = r.id and seq > $2 order by seq limit $3
  ) e on true
 where r.id = $1
 order by e.seq`;

/**
 * {@link EventStore.list} with each event as JSON text (see {@link EventPageJson}); `undefined`
 * for an unknown run. One statement: the status and the events are read in one snapshot, so a
 * terminal status comes with every event up to the terminal one.
 *
 * @example
 * const page = await listEventsJson(db, 'run_1', 0, 100); // page.events[0].json === '{"run_id":…}'
 */
export async function listEventsJson(
  db: Queryable,
  runId: string,
  afterSeq: number,
  limit: number,
): Promise<EventPageJson | undefined> {
  const r = await db.query<{ status: RunStatus; seq: number | string | null; json: string | null }>(
    LIST_JSON_SQL,
    [runId, afterSeq, limit],
  );
  const status = r.rows[0]?.status;
  if (!status) return undefined;
  const events: EventPageJson['events'] = [];
  for (const e of r.rows)
    if (e.seq !== null && e.json !== null) events.push({ seq: Number(e.seq), json: e.json });
  return { events, status };
}

/**
 * Appends an event written by the control plane itself (terminal status, lost runner), at the
 * run's next seq. Only called when no holder can append concurrently: the run row is locked
 * and its lease is gone or the run is ending.
 *
 * @example
 * await appendSystemEvent(tx, runId, 'terminal_status', { status: 'cancelled' });
 */
export async function appendSystemEvent(
  tx: Queryable,
  runId: string,
  type: EventType,
  payload: Record<string, unknown>,
): Promise<void> {
  await tx.query(APPEND_SYSTEM_SQL, [runId, type, JSON.stringify(payload)]);
}
