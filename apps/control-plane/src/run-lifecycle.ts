import { isLeaseError, type LeaseStore } from '@runt/leases';
import type { Database, Queryable } from '@runt/sql';
import {
  isTerminalRunStatus,
  type ClaimRunResponse,
  type FailureKind,
  type ReportRunStatusRequest,
  type Run,
  type RunCommand,
  type RunEventInput,
} from '@runt/protocol';
import { RunError, runNotActive } from './runs/run-error.js';
import type { RunSignals } from './run-signals.js';
import type { CommandStore } from './stores/command-store.js';
import type { EventStore } from './stores/event-store.js';
import type { EventBatch, RunState, RunStore } from './stores/run-store.js';

export interface RunLifecycleDeps {
  db: Database;
  leases: LeaseStore;
  runs: RunStore;
  events: EventStore;
  commands: CommandStore;
  signals: RunSignals;
}

const conflict = (runId: string, why: string) => new RunError('runner-lease-conflict', `the lease on ${runId} is not yours: ${why}`);

/**
 * The agent's side of a run, all fenced: claim the lease, renew it, append events, report
 * status, release, and move commands along. Every answer follows one order: unknown run 404;
 * terminal run 409 `run-not-active`; a fencing token that is not current, or a lease that ran
 * out by the database clock, 409 `runner-lease-conflict`; the current token presented by
 * another workstation 403. Writes check the lease and write in one transaction.
 */
export class RunLifecycle {
  constructor(private readonly d: RunLifecycleDeps) {}

  /**
   * Takes the lease of a run offered to `workstationId` (`offered → accepted`). The same runner
   * claiming again gets the same token back (a retried claim is safe).
   *
   * @example
   * const { fencing_token, next_event_seq } = await lifecycle.claim('ws_1', 'run_1', 'agent-1', 30_000);
   */
  async claim(workstationId: string, runId: string, runnerId: string, leaseMs: number): Promise<ClaimRunResponse> {
    const holder = `${workstationId}/${runnerId}`;
    // One statement in the common case; anything unusual takes the checked path below.
    const fast = await this.d.runs.claimFast(runId, workstationId, holder, leaseMs);
    if (fast) {
      return { fencing_token: fast.fencingToken, expires_at: fast.expiresAt, run: fast.run, next_event_seq: fast.nextEventSeq, pending_commands: fast.pendingCommands };
    }
    return this.claimChecked(workstationId, runId, holder, leaseMs);
  }

  private async claimChecked(workstationId: string, runId: string, holder: string, leaseMs: number): Promise<ClaimRunResponse> {
    const s = await this.d.runs.state(runId);
    if (!s) throw new RunError('not-found', 'no such run');
    if (isTerminalRunStatus(s.status)) throw runNotActive();
    if (s.workstation_id !== workstationId) {
      if (s.status === 'queued') throw new RunError('run-not-offered', 'the run is not offered to this workstation');
      throw new RunError('forbidden', 'the run belongs to another workstation');
    }
    const grant = await this.d.leases.claim(runId, holder, leaseMs);
    const r = await this.d.db.query(
      `update runs set status = case when status = 'offered' then 'accepted' else status end, accepted_at = coalesce(accepted_at, now()),
              lease_holder = $3, fencing_token = $4
        where id = $1 and workstation_id = $2 and status in ('offered', 'accepted', 'running')`,
      [runId, workstationId, holder, grant.fencingToken],
    );
    if (r.rowCount === 0) {
      // Cancelled or withdrawn between our read and the claim: give the lease back.
      await this.d.leases.release(runId, holder, grant.fencingToken);
      const now = await this.d.runs.state(runId);
      if (now && isTerminalRunStatus(now.status)) throw runNotActive();
      throw new RunError('run-not-offered', 'the run is no longer offered to this workstation');
    }
    const run = (await this.d.runs.get(runId))!;
    const pending = await this.d.commands.list(runId, 0);
    return {
      fencing_token: grant.fencingToken,
      expires_at: grant.expiresAt.toISOString(),
      run,
      next_event_seq: (await this.d.runs.state(runId))!.next_event_seq,
      pending_commands: pending.some((c) => c.state === 'pending'),
    };
  }

  /**
   * Renews the lease; the answer carries `cancel_requested` so an agent without a link still
   * learns of a cancel.
   *
   * @example
   * const { cancel_requested } = await lifecycle.heartbeat('ws_1', 'run_1', 3, 30_000);
   */
  async heartbeat(workstationId: string, runId: string, token: number, leaseMs: number): Promise<{ expires_at: string; cancel_requested: boolean }> {
    const s = this.authorize(await this.d.runs.state(runId), workstationId, runId, token);
    const grant = await this.d.leases.renew(runId, s.lease_holder ?? '-', token, leaseMs);
    return { expires_at: grant.expiresAt.toISOString(), cancel_requested: s.cancel_requested };
  }

  /**
   * Appends a batch of events under the lease; resent events are dropped, a gap is refused
   * with 409 `event-seq-gap`. Returns the next seq the holder should send.
   *
   * @example
   * await lifecycle.appendEvents('ws_1', 'run_1', 3, [{ seq: 1, type: 'log', payload: { stream: 'stdout', data: 'hi\n' } }]);
   */
  async appendEvents(workstationId: string, runId: string, token: number, batch: RunEventInput[]): Promise<number> {
    const contiguous = eventBatch(batch);
    const fast = contiguous ? await this.d.runs.appendFast(runId, workstationId, token, contiguous) : undefined;
    if (fast !== undefined) {
      this.d.signals.eventsAppended(runId);
      return fast;
    }
    const next = await this.fenced(workstationId, runId, token, (tx, s) => this.d.events.append(tx, runId, s.next_event_seq, batch));
    this.d.signals.eventsAppended(runId);
    return next;
  }

  /**
   * `accepted → running`, or a terminal status, optionally with the holder's last events
   * (appended first, in the same transaction). A terminal report appends the
   * `terminal_status` event, cancels open commands and gives the lease up.
   *
   * @example
   * await lifecycle.reportStatus('ws_1', 'run_1', { fencing_token: 3, status: 'completed', exit_code: 0 });
   */
  async reportStatus(workstationId: string, runId: string, body: ReportRunStatusRequest): Promise<{ run: Run; nextEventSeq: number }> {
    const events = body.events ?? [];
    const batch = events.length > 0 ? eventBatch(events) : undefined;
    // One fenced statement in the common case (accepted → running, or active → terminal with
    // the lease released); a retry, a gap or a refusal takes the checked path for its answer.
    if (events.length === 0 || batch) {
      const fast =
        body.status === 'running'
          ? await this.d.runs.runningFast(runId, workstationId, body.fencing_token, batch)
          : await this.d.runs.finishFast(runId, workstationId, body.fencing_token, outcomeOf(body), batch);
      if (fast) {
        if (body.status !== 'running' || events.length > 0) this.d.signals.eventsAppended(runId);
        if (body.status !== 'running') this.d.signals.schedule();
        return fast;
      }
    }
    const holder = await this.fenced(workstationId, runId, body.fencing_token, async (tx, s) => {
      if (events.length > 0) s = { ...s, next_event_seq: await this.d.events.append(tx, runId, s.next_event_seq, events) };
      if (body.status === 'running') {
        if (s.status === 'accepted') await tx.query(`update runs set status = 'running', started_at = now() where id = $1`, [runId]);
        return undefined;
      }
      await this.d.runs.finish(tx, runId, outcomeOf(body));
      return s.lease_holder ?? '-';
    });
    if (holder !== undefined) {
      await this.d.leases.release(runId, holder, body.fencing_token);
      this.d.signals.schedule();
    }
    if (holder !== undefined || events.length > 0) this.d.signals.eventsAppended(runId);
    const run = (await this.d.runs.get(runId))!;
    return { run, nextEventSeq: (await this.d.runs.state(runId))!.next_event_seq };
  }

  /**
   * Gives the lease up without finishing: a run that never reached `running` goes back to the
   * queue while attempts remain, a running one fails with `runner-lost`.
   *
   * @example
   * await lifecycle.release('ws_1', 'run_1', 3);
   */
  async release(workstationId: string, runId: string, token: number): Promise<void> {
    const s = await this.d.runs.state(runId);
    if (s && isTerminalRunStatus(s.status) && s.fencing_token === token && s.workstation_id === workstationId) return;
    const holder = await this.fenced(workstationId, runId, token, async (tx, locked) => {
      await this.d.runs.loseRunner(tx, locked, 'the runner released the run');
      return locked.lease_holder ?? '-';
    });
    await this.d.leases.release(runId, holder, token);
    this.d.signals.eventsAppended(runId);
    this.d.signals.schedule();
  }

  /**
   * The holder acknowledges a command (`pending → acked`).
   *
   * @example
   * await lifecycle.ackCommand('ws_1', 'cmd_1', 3);
   */
  async ackCommand(workstationId: string, commandId: string, token: number): Promise<RunCommand> {
    const runId = await this.commandRun(commandId);
    return this.fenced(workstationId, runId, token, (tx) => this.d.commands.ack(tx, commandId));
  }

  /**
   * The holder finishes a command (`completed | failed | cancelled`).
   *
   * @example
   * await lifecycle.commandStatus('ws_1', 'cmd_1', 3, 'completed', 0);
   */
  async commandStatus(
    workstationId: string,
    commandId: string,
    token: number,
    state: 'completed' | 'failed' | 'cancelled',
    exitCode?: number,
    message?: string,
  ): Promise<RunCommand> {
    const runId = await this.commandRun(commandId);
    return this.fenced(workstationId, runId, token, (tx) => this.d.commands.finish(tx, commandId, state, exitCode, message));
  }

  private async commandRun(commandId: string): Promise<string> {
    const cmd = await this.d.commands.get(commandId);
    if (!cmd) throw new RunError('not-found', 'no such command');
    return cmd.run_id;
  }

  /** The checks every fenced call makes before touching anything (see the class comment). */
  private authorize(s: RunState | undefined, workstationId: string, runId: string, token: number): RunState {
    if (!s) throw new RunError('not-found', 'no such run');
    if (isTerminalRunStatus(s.status)) throw runNotActive();
    if (s.fencing_token !== token) throw conflict(runId, `fencing token ${token} is not current`);
    if (s.workstation_id !== workstationId) throw new RunError('forbidden', 'the run belongs to another workstation');
    return s;
  }

  /**
   * Runs `write` in ONE transaction that first checks the fencing token against a live lease
   * (`assertFenced` locks the lease row, so no claim can take it over before the commit), then
   * locks the run row and applies the same checks as {@link authorize}. A refused lease on a run
   * that has ended answers `run-not-active`; on an unknown run, 404.
   */
  private async fenced<T>(workstationId: string, runId: string, token: number, write: (tx: Queryable, s: RunState) => Promise<T>): Promise<T> {
    try {
      return await this.d.db.transaction(async (tx) => {
        await this.d.leases.assertFenced(tx, runId, token);
        const s = this.authorize(await this.d.runs.state(runId, tx, true), workstationId, runId, token);
        return write(tx, s);
      });
    } catch (e) {
      if (isLeaseError(e, 'runner-lease-conflict')) {
        const s = await this.d.runs.state(runId);
        if (!s) throw new RunError('not-found', 'no such run');
        if (isTerminalRunStatus(s.status)) throw runNotActive();
      }
      throw e;
    }
  }
}

/** The batch as the fast paths take it, or undefined when its seqs are not contiguous (the checked path decides). */
function eventBatch(events: RunEventInput[]): EventBatch | undefined {
  if (events.length === 0) return undefined;
  const sorted = [...events].sort((a, b) => a.seq - b.seq);
  for (let i = 1; i < sorted.length; i++) if (sorted[i]!.seq !== sorted[i - 1]!.seq + 1) return undefined;
  return {
    first: sorted[0]!.seq,
    last: sorted[sorted.length - 1]!.seq,
    json: JSON.stringify(sorted.map((e) => ({ seq: e.seq, type: e.type, payload: e.payload, at: e.at ?? null }))),
  };
}

function outcomeOf(body: ReportRunStatusRequest): { status: 'completed' | 'failed' | 'cancelled' | 'blocked'; exitCode?: number; failureKind?: FailureKind; message?: string } {
  return {
    status: body.status as 'completed' | 'failed' | 'cancelled' | 'blocked',
    ...(body.exit_code === undefined ? {} : { exitCode: body.exit_code }),
    ...failureOf(body),
    ...(body.failure_message ? { message: body.failure_message } : {}),
  };
}

function failureOf(body: ReportRunStatusRequest): { failureKind?: FailureKind } {
  if (body.status === 'completed') return {};
  if (body.failure_kind) return { failureKind: body.failure_kind };
  if (body.status === 'cancelled') return { failureKind: 'cancelled' };
  if (body.status === 'failed') return { failureKind: body.exit_code !== undefined && body.exit_code !== 0 ? 'nonzero-exit' : 'internal' };
  return {};
}
