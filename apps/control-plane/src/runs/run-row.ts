import {
  SECRET_MASK,
  type FailureKind,
  type RetryPolicy,
  type Run,
  type RunAttempt,
  type RunStatus,
} from '@runt/protocol';
import type { SealedEnv } from './secret-box.js';

/** One `runs` row joined with its live lease (`l_*`), as every run query selects it. */
export interface RunRow {
  id: string;
  position: number | string;
  status: RunStatus;
  runtime: string;
  image: string | null;
  command: string[];
  env: Record<string, string>;
  /** Sealed secret env entries (never plaintext); null without any. */
  secret_env?: SealedEnv | null;
  workdir: string | null;
  ready_when: { log_line: string } | null;
  placement_workstation_id: string | null;
  placement_labels: Record<string, string>;
  cpus: number | null;
  memory_bytes: number | string | null;
  bundle_sha256: string | null;
  max_attempts: number;
  idempotency_key: string | null;
  timeout_s: number | null;
  queue_timeout_s: number | null;
  retry: RetryPolicy | null;
  not_before: Date | string | null;
  attempt: number;
  workstation_id: string | null;
  lease_holder: string | null;
  fencing_token: number | string | null;
  exit_code: number | null;
  failure_kind: FailureKind | null;
  failure_message: string | null;
  cancel_requested: boolean;
  next_event_seq: number | string;
  created_at: Date | string;
  offered_at: Date | string | null;
  accepted_at: Date | string | null;
  started_at: Date | string | null;
  finished_at: Date | string | null;
  l_holder: string | null;
  l_token: number | string | null;
  l_expires_at: Date | string | null;
}

/** Statuses from which a run can still move; the rest are terminal. */
export const ACTIVE_STATUSES = `('queued', 'offered', 'accepted', 'running')`;

/** `select` of a run with its held lease; append `where r.… ` to it. */
export const SELECT_RUN = `
select r.*, l.holder as l_holder, l.fencing_token as l_token, l.expires_at as l_expires_at
from runs r left join leases l on l.resource = r.id and l.holder is not null`;

// A timestamp as Postgres writes it in JSON (`row_to_json`) in the UTC session every connection
// opens (`TimeZone=UTC`, @runt/sql): `2026-12-02T22:27:01.123456+00:00`, the fraction 0–6 digits.
const PG_JSON_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?\+00:00$/;

/**
 * A timestamp (a `Date`, or a text a `Date` reads) as ISO 8601 in UTC with milliseconds, null
 * for null. Postgres' own UTC JSON text is rewritten without a `Date` (parsing the text cost
 * ~1.3 µs, three times for every run claimed on offer; issue 9, docs/benchmarks.md): the same
 * characters, the fraction cut to milliseconds as `Date` cuts it. Anything else goes through
 * `Date`.
 *
 * @example
 * iso('2026-12-02T22:27:01.12+00:00'); // '2026-12-02T22:27:01.120Z'
 */
export function iso(v: Date | string | null): string | null {
  if (v === null) return null;
  if (typeof v !== 'string') return v.toISOString();
  if (!PG_JSON_UTC.test(v)) return new Date(v).toISOString();
  // 19 characters of date and time, then nothing, or `.` and 1–6 digits, then `+00:00`.
  const digits = v.length - 26;
  if (digits < 0) return `${v.slice(0, 19)}.000Z`;
  return `${v.slice(0, 20)}${digits >= 3 ? v.slice(20, 23) : v.slice(20, 20 + digits).padEnd(3, '0')}Z`;
}

/**
 * Maps a joined `runs` row to the wire `Run`. The lease shown is the one the lease store holds
 * (it may have run out by the clock and not yet been swept).
 *
 * @example
 * const run = toRun((await db.query<RunRow>(`${SELECT_RUN} where r.id = $1`, [id])).rows[0]!);
 */
export function toRun(r: RunRow): Run {
  const placement: Run['placement'] = {};
  if (r.placement_workstation_id) placement.workstation_id = r.placement_workstation_id;
  if (r.placement_labels && Object.keys(r.placement_labels).length > 0) placement.labels = r.placement_labels;
  const resources: Run['resources'] = {};
  if (r.cpus !== null) resources.cpus = Number(r.cpus);
  if (r.memory_bytes !== null) resources.memory_bytes = Number(r.memory_bytes);
  // Secret entries: the name with the mask, never the value (only a claim answer opens them).
  const secretNames = r.secret_env ? Object.keys(r.secret_env) : [];
  const env =
    secretNames.length === 0
      ? r.env
      : { ...r.env, ...Object.fromEntries(secretNames.map((n) => [n, SECRET_MASK])) };
  return {
    id: r.id,
    status: r.status,
    runtime: r.runtime,
    image: r.image,
    command: r.command,
    env,
    ...(secretNames.length > 0 ? { secret_env_names: secretNames } : {}),
    workdir: r.workdir,
    ready_when: r.ready_when,
    placement,
    resources,
    bundle: r.bundle_sha256 ? { sha256: r.bundle_sha256 } : null,
    max_attempts: r.max_attempts,
    timeout_s: r.timeout_s ?? null,
    queue_timeout_s: r.queue_timeout_s ?? null,
    retry: r.retry ?? null,
    not_before: r.status === 'queued' ? iso(r.not_before ?? null) : null,
    attempt: r.attempt,
    workstation_id: r.workstation_id,
    lease:
      r.l_holder !== null && r.l_token !== null && r.l_expires_at !== null
        ? { holder: r.l_holder, fencing_token: Number(r.l_token), expires_at: iso(r.l_expires_at)! }
        : null,
    exit_code: r.exit_code,
    failure_kind: r.failure_kind,
    failure_message: r.failure_message,
    cancel_requested: r.cancel_requested,
    created_at: iso(r.created_at)!,
    offered_at: iso(r.offered_at),
    accepted_at: iso(r.accepted_at),
    started_at: iso(r.started_at),
    finished_at: iso(r.finished_at),
  };
}

/** One `run_attempts` row: an attempt that ended without ending its run. */
export interface AttemptRow {
  attempt: number;
  status: RunStatus;
  workstation_id: string | null;
  exit_code: number | null;
  failure_kind: FailureKind | null;
  failure_message: string | null;
  accepted_at: Date | string | null;
  started_at: Date | string | null;
  finished_at: Date | string;
  first_event_seq: number | string;
  last_event_seq: number | string;
  retry_at: Date | string | null;
}

/**
 * Every attempt of `run`, first to last: the ended ones kept in `run_attempts`, then the
 * current (or last) one, which is the run row itself.
 *
 * @example
 * const attempts = toAttempts(run, rows);
 */
export function toAttempts(run: Run, rows: AttemptRow[]): RunAttempt[] {
  const ended: RunAttempt[] = rows.map((a) => ({
    attempt: a.attempt,
    status: a.status,
    workstation_id: a.workstation_id,
    exit_code: a.exit_code,
    failure_kind: a.failure_kind,
    failure_message: a.failure_message,
    accepted_at: iso(a.accepted_at),
    started_at: iso(a.started_at),
    finished_at: iso(a.finished_at),
    first_event_seq: Number(a.first_event_seq),
    last_event_seq: Number(a.last_event_seq),
    retry_at: iso(a.retry_at),
  }));
  const last = ended[ended.length - 1];
  ended.push({
    attempt: run.attempt,
    status: run.status,
    workstation_id: run.workstation_id,
    exit_code: run.exit_code,
    failure_kind: run.failure_kind,
    failure_message: run.failure_message,
    accepted_at: run.accepted_at,
    started_at: run.started_at,
    finished_at: run.finished_at,
    first_event_seq: last ? last.last_event_seq! + 1 : 1,
    last_event_seq: null,
    retry_at: null,
  });
  return ended;
}
