import { randomUUID } from 'node:crypto';
import type { Database, Queryable } from '@runt/sql';
import {
  isTerminalRunStatus,
  type QueueCommandRequest,
  type RunCommand,
  type RunStatus,
} from '@runt/protocol';
import { RunError, runNotActive } from './run-error.js';
import { iso } from './run-row.js';

interface CommandRow {
  id: string;
  run_id: string;
  seq: number | string;
  payload: RunCommand['payload'];
  state: RunCommand['state'];
  exit_code: number | null;
  created_at: Date | string;
  acked_at: Date | string | null;
  finished_at: Date | string | null;
}

const toCommand = (r: CommandRow): RunCommand => ({
  id: r.id,
  run_id: r.run_id,
  seq: Number(r.seq),
  payload: r.payload,
  state: r.state,
  exit_code: r.exit_code,
  created_at: iso(r.created_at)!,
  acked_at: iso(r.acked_at),
  finished_at: iso(r.finished_at),
});

const COLUMNS = 'id, run_id, seq, payload, state, exit_code, created_at, acked_at, finished_at';

/**
 * Commands into live runs: `pending → acked → completed | failed | cancelled`, numbered per
 * run. Queuing takes the run row's command counter, so seqs are gap-free per run.
 */
export class CommandStore {
  constructor(private readonly db: Database) {}

  /**
   * Queues a command on an active run inside the caller's transaction (which has checked the
   * run is active and locked it).
   *
   * @example
   * const cmd = await commands.queue(tx, 'run_1', { type: 'exec', command: ['ls'] });
   */
  async queue(tx: Queryable, runId: string, payload: QueueCommandRequest): Promise<RunCommand> {
    const r = await tx.query<CommandRow>(
      `with s as (update runs set next_command_seq = next_command_seq + 1 where id = $2 returning next_command_seq - 1 as seq)
       insert into run_commands (id, run_id, seq, payload, state) select $1, $2, s.seq, $3::jsonb, 'pending' from s
       returning ${COLUMNS}`,
      [`cmd_${randomUUID()}`, runId, JSON.stringify(payload)],
    );
    return toCommand(r.rows[0]!);
  }

  /**
   * Queues a command on a run that is still active (409 `run-not-active` otherwise); undefined
   * for an unknown run. Returns the workstation to wake.
   *
   * @example
   * const out = await commands.queueOnRun('run_1', { type: 'exec', command: ['ls'] });
   */
  async queueOnRun(
    runId: string,
    payload: QueueCommandRequest,
    /** Runs in the same transaction after the insert (the caller publishes the wake-up there). */
    inTx?: (tx: Queryable, out: { command: RunCommand; workstationId: string | null }) => Promise<void>,
  ): Promise<{ command: RunCommand; workstationId: string | null } | undefined> {
    return this.db.transaction(async (tx) => {
      const r = await tx.query<{ status: RunStatus; workstation_id: string | null }>(
        'select status, workstation_id from runs where id = $1 for update',
        [runId],
      );
      const run = r.rows[0];
      if (!run) return undefined;
      if (isTerminalRunStatus(run.status)) throw runNotActive();
      const out = { command: await this.queue(tx, runId, payload), workstationId: run.workstation_id };
      await inTx?.(tx, out);
      return out;
    });
  }

  /** A run's commands after `afterSeq`, oldest first. */
  async list(runId: string, afterSeq: number, limit = 500): Promise<RunCommand[]> {
    const r = await this.db.query<CommandRow>(
      `select ${COLUMNS} from run_commands where run_id = $1 and seq > $2 order by seq limit $3`,
      [runId, afterSeq, limit],
    );
    return r.rows.map(toCommand);
  }

  /** One command, or undefined. */
  async get(id: string): Promise<RunCommand | undefined> {
    const r = await this.db.query<CommandRow>(`select ${COLUMNS} from run_commands where id = $1`, [id]);
    return r.rows[0] ? toCommand(r.rows[0]) : undefined;
  }

  /**
   * `pending → acked` (an ack of an acked command is a no-op, so retries are safe). A finished
   * command answers 409 `command-not-active`.
   *
   * @example
   * await commands.ack(tx, 'cmd_1');
   */
  async ack(tx: Queryable, id: string): Promise<RunCommand> {
    const r = await tx.query<CommandRow>(
      `update run_commands set state = 'acked', acked_at = coalesce(acked_at, now())
        where id = $1 and state in ('pending', 'acked') returning ${COLUMNS}`,
      [id],
    );
    if (r.rows[0]) return toCommand(r.rows[0]);
    return this.refuse(tx, id, 'acked');
  }

  /**
   * Finishes a pending or acked command. Reporting the state it already finished in is a
   * no-op (a retry); any other change of a finished command answers 409 `command-not-active`.
   *
   * @example
   * await commands.finish(tx, 'cmd_1', 'completed', 0);
   */
  async finish(
    tx: Queryable,
    id: string,
    state: 'completed' | 'failed' | 'cancelled',
    exitCode?: number,
    message?: string,
  ): Promise<RunCommand> {
    const r = await tx.query<CommandRow>(
      `update run_commands set state = $2, exit_code = $3, message = $4, acked_at = coalesce(acked_at, now()), finished_at = now()
        where id = $1 and state in ('pending', 'acked') returning ${COLUMNS}`,
      [id, state, exitCode ?? null, message ?? null],
    );
    if (r.rows[0]) return toCommand(r.rows[0]);
    return this.refuse(tx, id, state);
  }

  private async refuse(tx: Queryable, id: string, wanted: string): Promise<RunCommand> {
    const r = await tx.query<CommandRow>(`select ${COLUMNS} from run_commands where id = $1`, [id]);
    const row = r.rows[0];
    if (!row) throw new RunError('not-found', 'no such command');
    if (row.state === wanted) return toCommand(row);
    throw new RunError('command-not-active', `command is already ${row.state}`, { state: row.state });
  }
}

/** Cancels every unfinished command of a run that has ended (inside its transaction). */
export async function cancelOpenCommands(tx: Queryable, runId: string): Promise<void> {
  await tx.query(
    `update run_commands set state = 'cancelled', finished_at = now() where run_id = $1 and state in ('pending', 'acked')`,
    [runId],
  );
}
