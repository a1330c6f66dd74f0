import type { Queryable } from '@runt/sql';
import type { RetryPolicy, RunStatus } from '@runt/protocol';

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
  /** The run's automatic retry policy (null: none). */
  retry: RetryPolicy | null;
}

const STATE_COLUMNS =
  'id, status, workstation_id, lease_holder, fencing_token, cancel_requested, next_event_seq, attempt, max_attempts, retry';

/**
 * The fenced paths' view of a run, or undefined; `lock` takes the row lock inside `q`'s
 * transaction (`select … for update`), which every transition on a locked run relies on.
 *
 * @example
 * const s = await readRunState(tx, 'run_1', true);
 */
export async function readRunState(q: Queryable, id: string, lock = false): Promise<RunState | undefined> {
  const r = await q.query<Record<string, unknown>>(
    `select ${STATE_COLUMNS} from runs where id = $1${lock ? ' for update' : ''}`,
    [id],
  );
  const row = r.rows[0];
  if (!row) return undefined;
  return {
    ...(row as unknown as RunState),
    fencing_token: row.fencing_token === null ? null : Number(row.fencing_token),
    next_event_seq: Number(row.next_event_seq),
  };
}
