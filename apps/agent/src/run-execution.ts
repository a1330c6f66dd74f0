import { performance } from 'node:perf_hooks';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { backoffDelay, isApiError, sleep, type ControlPlaneClient, type FailureKind, type ReportRunStatusRequest, type Run, type RunCommand } from '@runt/protocol';
import { claimedLeaseFrom, type ClaimedLease, type HeldLease, type LeaseClient } from '@runt/leases';
import { runFailureKind, type Runtime } from '@runt/runtime-spi';
import { materializeBundle } from './materialize-bundle.js';
import { RunEventLog } from './run-event-log.js';
import type { RunState, RunStateStore } from './run-state-store.js';

/** Labels every instance the agent creates carries (how a restarted agent finds its work). */
export const RUN_ID_LABEL = 'runt.run-id';
export const WORKSTATION_LABEL = 'runt.workstation';

export interface RunExecutionDeps {
  client: ControlPlaneClient;
  /** Keeps each run's lease alive (claims go through `client`; the claimed lease is handed to `hold`). */
  leases: Pick<LeaseClient, 'hold'>;
  /** The run's runtime, or why there is none. */
  runtime: Runtime | { unavailable: string };
  store: RunStateStore;
  /** Parent of the per-run working directories. */
  workRoot: string;
  workstationId: string;
  runnerId: string;
  leaseMs: number;
  /** Polite-signal-to-kill time when stopping the workload. */
  stopTimeoutMs: number;
  /** How often to look for queued commands without a wake-up from the link. */
  commandPollMs: () => number;
  /** True while the link is up (it delivers `command` wake-ups, so no first listing is needed). */
  linkUp?: () => boolean;
  /** Called once the run no longer takes a slot here (terminal status reported, or dropped). */
  onSlotFree?: () => void;
  logger: Logger;
}

/** `claiming → preparing → starting → running → reporting → done`, or `dropped` when the lease is no longer ours. */
export type RunExecutionPhase = 'preparing' | 'starting' | 'running' | 'reporting' | 'done' | 'dropped';

type Outcome = Pick<ReportRunStatusRequest, 'status' | 'exit_code' | 'failure_kind' | 'failure_message'>;

/**
 * One held run on this agent, from a successful claim to the release of its lease: it
 * materialises the bundle, makes sure the image is there, creates and starts the instance,
 * streams its output as `log` events, reports `running` and the terminal status, executes
 * queued commands, and obeys cancels. Every report is fenced with the claim's token; a 409
 * (taken over, already terminal) or a lost lease drops the run: the workload is stopped and
 * nothing further is reported.
 *
 * @example
 * const exec = await RunExecution.claim(deps, offeredRun);
 * if (exec) await exec.done;
 */
export class RunExecution {
  phase: RunExecutionPhase = 'preparing';
  readonly runId: string;
  /** Settles when the run is finished here (reported, dropped or stopped); never rejects. */
  readonly done: Promise<void>;
  readonly #lease: HeldLease;
  readonly #events: RunEventLog;
  readonly #work = new AbortController();
  readonly #cancel = new AbortController();
  #cancelMessage = 'cancelled';
  #state: RunState;
  #instanceId: string | undefined;
  #stopping: Promise<void> | undefined;
  #commandWake: (() => void) | undefined;
  #commandsPending = false;
  #reportedRunning: boolean;
  /** The control plane takes events on status reports and releases the lease on a terminal one. */
  readonly #carryEvents: boolean;
  /** The claim said no commands were waiting: with the link up, the first listing is skipped. */
  readonly #noCommandsAtClaim: boolean;

  private constructor(
    private readonly deps: RunExecutionDeps,
    private readonly run: Run | undefined,
    state: RunState,
    lease: ClaimedLease,
    adopted: boolean,
    pendingCommands?: boolean,
  ) {
    this.runId = state.run_id;
    this.#carryEvents = pendingCommands !== undefined;
    this.#noCommandsAtClaim = pendingCommands === false;
    this.#state = state;
    this.#instanceId = state.instance_id;
    this.#reportedRunning = state.ready;
    // `cancel_requested` in a heartbeat answer is how cancels reach an agent whose link is down.
    this.#lease = deps.leases.hold(state.run_id, lease, {
      onRenew: (_expiresAt, answer) => {
        if (answer.cancel_requested === true) this.cancel('cancelled by request');
      },
    });
    this.#lease.signal.addEventListener('abort', () => this.#drop(`lease lost: ${(this.#lease.signal.reason as Error)?.message}`), { once: true });
    this.#events = new RunEventLog({
      client: deps.client,
      runId: state.run_id,
      fencingToken: state.fencing_token,
      nextSeq: state.next_seq,
      signal: this.#work.signal,
      onRejected: (e) => this.#drop(`event append refused: ${e.message}`),
      onFlushed: (nextSeq, logChars) => {
        this.#state = { ...this.#state, next_seq: nextSeq, log_chars: logChars };
        void this.#persist();
      },
    });
    this.done = (adopted ? this.#resume() : this.#execute()).catch((e) => {
      deps.logger.error({ run_id: this.runId, err: e }, 'run execution failed unexpectedly');
    });
  }

  /**
   * Claims the lease of an offered run and starts executing it; `undefined` when the claim was
   * refused (another runner has it, or the run is no longer offered).
   */
  static async claim(deps: RunExecutionDeps, run: Run): Promise<RunExecution | undefined> {
    const sentAt = performance.now();
    let claim;
    try {
      claim = await deps.client.claimRun(run.id, { runner_id: deps.runnerId, lease_ms: deps.leaseMs });
    } catch (e) {
      deps.logger.debug({ run_id: run.id, err: e }, 'claim refused');
      return undefined;
    }
    const state: RunState = {
      run_id: run.id,
      runtime: claim.run.runtime,
      runner_id: deps.runnerId,
      fencing_token: claim.fencing_token,
      next_seq: claim.next_event_seq,
      log_chars: { stdout: 0, stderr: 0 },
      ready: false,
      command_seq: 0,
      ...(claim.run.ready_when ? { ready_when: claim.run.ready_when.log_line } : {}),
    };
    const lease = claimedLeaseFrom(run.id, claim, { runnerId: deps.runnerId, leaseMs: deps.leaseMs, claimedAt: sentAt });
    await deps.store.save(state);
    deps.logger.info({ run_id: run.id, fence: claim.fencing_token, attempt: claim.run.attempt }, 'claimed');
    return new RunExecution(deps, claim.run, state, lease, false, claim.pending_commands);
  }

  /**
   * Picks up a run this agent held before a restart: its lease must still be ours (checked by
   * the caller with a heartbeat, whose answer and send time `confirmed` carries) and its instance
   * must exist. Output already sent is skipped.
   */
  static adopt(deps: RunExecutionDeps, state: RunState, confirmed: { sentAt: number; expiresAt: string }): RunExecution {
    deps.logger.info({ run_id: state.run_id, instance_id: state.instance_id }, 're-adopted');
    const lease = claimedLeaseFrom(
      state.run_id,
      { fencing_token: state.fencing_token, expires_at: confirmed.expiresAt },
      { runnerId: state.runner_id, leaseMs: deps.leaseMs, claimedAt: confirmed.sentAt },
    );
    return new RunExecution(deps, undefined, state, lease, true);
  }

  /** False once the run's terminal status is reported (or it was dropped): its slot is free for the next offer. */
  get holdsSlot(): boolean {
    return this.phase !== 'done' && this.phase !== 'dropped';
  }

  /** Next seq this run's events will carry. */
  get nextEventSeq(): number {
    return this.#events.nextSeq;
  }

  /** Stops the workload (polite signal, then kill) and reports `cancelled`. Idempotent. */
  cancel(message = 'cancelled'): void {
    if (this.#cancel.signal.aborted || this.phase === 'done' || this.phase === 'dropped') return;
    this.#cancelMessage = message;
    this.deps.logger.info({ run_id: this.runId, reason: message }, 'cancelling');
    this.#cancel.abort(new Error(message));
    void this.#stopWorkload();
  }

  /** A command was queued for this run (link wake-up): look now instead of at the next poll. */
  wakeCommands(): void {
    this.#commandsPending = true;
    this.#commandWake?.();
  }

  // ---- the flow ----

  async #execute(): Promise<void> {
    try {
      const outcome = await this.#prepareAndStart();
      if (outcome) return await this.#finish(outcome);
      await this.#follow();
    } finally {
      await this.#cleanup();
    }
  }

  async #resume(): Promise<void> {
    try {
      this.phase = 'running';
      await this.#follow();
    } finally {
      await this.#cleanup();
    }
  }

  /** Returns an outcome when the run ended before its workload started. */
  async #prepareAndStart(): Promise<Outcome | undefined> {
    const run = this.run as Run;
    const { runtime } = this.deps;
    const cancelled = (): Outcome | undefined =>
      this.#cancel.signal.aborted ? { status: 'cancelled', failure_kind: 'cancelled', failure_message: this.#cancelMessage } : undefined;
    if ('unavailable' in runtime) return fail('runtime-unavailable', runtime.unavailable);

    const workdir = join(this.deps.workRoot, run.id);
    try {
      await rm(workdir, { recursive: true, force: true });
      await mkdir(workdir, { recursive: true, mode: 0o700 });
      if (run.bundle) {
        const bytes = await this.#retry(() => this.deps.client.downloadBundle(run.bundle!.sha256));
        if (!bytes) return cancelled() ?? this.#dropped();
        await materializeBundle(bytes, run.bundle.sha256, workdir);
      }
    } catch (e) {
      return fail('start-failed', `cannot prepare the working directory: ${(e as Error).message}`);
    }
    if (cancelled()) return cancelled();

    const signal = AbortSignal.any([this.#work.signal, this.#cancel.signal]);
    if (run.image) {
      try {
        await runtime.ensureImage(run.image, { signal });
      } catch (e) {
        if (cancelled() || this.#work.signal.aborted) return cancelled() ?? this.#dropped();
        return fail(runFailureKind(e, 'image'), (e as Error).message);
      }
    }

    this.phase = 'starting';
    try {
      const instance = await runtime.create(
        {
          name: `runt-${run.id}-${run.attempt}`.replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 120),
          sourcePath: workdir,
          ...(run.image ? { image: run.image } : {}),
          ...(run.command.length > 0 ? { command: run.command } : {}),
          env: run.env,
          ...(run.workdir ? { workdir: run.workdir } : {}),
          labels: { [RUN_ID_LABEL]: run.id, [WORKSTATION_LABEL]: this.deps.workstationId },
          limits: {
            ...(run.resources.cpus ? { cpus: run.resources.cpus } : {}),
            ...(run.resources.memory_bytes ? { memoryBytes: run.resources.memory_bytes } : {}),
          },
        },
        { signal: this.#work.signal },
      );
      this.#instanceId = instance.id;
      this.#state = { ...this.#state, instance_id: instance.id };
      await this.#persist();
      if (cancelled()) return cancelled();
      await runtime.start(instance.id, { signal: this.#work.signal });
    } catch (e) {
      if (this.#work.signal.aborted) return this.#dropped();
      if (cancelled()) return cancelled();
      return fail(runFailureKind(e, 'start'), (e as Error).message);
    }
    this.phase = 'running';
    this.#events.append('backend_status', { state: 'started', instance_id: this.#instanceId, runtime: runtime.name });
    if (!this.#state.ready_when) await this.#reportRunning();
    return undefined;
  }

  /** Streams output, runs commands, waits for the exit and reports it. */
  async #follow(): Promise<void> {
    const runtime = this.deps.runtime as Runtime;
    const id = this.#instanceId as string;
    const logsStop = new AbortController();
    const logsSignal = AbortSignal.any([logsStop.signal, this.#work.signal]);
    const logs = this.#streamLogs(runtime, id, logsSignal);
    const commands = this.#commandLoop(runtime, id);
    let exit;
    try {
      exit = await runtime.wait(id, { signal: this.#work.signal });
    } catch (e) {
      if (this.#work.signal.aborted) return;
      this.deps.logger.warn({ run_id: this.runId, err: e }, 'waiting for the workload failed');
      exit = undefined;
    }
    // The follow ends by itself once the instance has exited; give it a moment to read the tail.
    const tail = new AbortController();
    await Promise.race([logs, sleep(5_000, AbortSignal.any([tail.signal, this.#work.signal]))]);
    tail.abort();
    logsStop.abort();
    await logs;
    this.#commandsDone = true;
    this.#commandWake?.();
    await commands;
    if (this.#work.signal.aborted) return;

    let outcome: Outcome;
    if (this.#cancel.signal.aborted) {
      outcome = { status: 'cancelled', failure_kind: 'cancelled', failure_message: this.#cancelMessage, ...(exit ? { exit_code: exit.exitCode } : {}) };
    } else if (!exit) {
      outcome = fail('internal', 'the runtime lost track of the workload');
    } else if (exit.exitCode === 0) {
      outcome = { status: 'completed', exit_code: 0 };
    } else {
      outcome = {
        status: 'failed',
        exit_code: exit.exitCode,
        failure_kind: 'nonzero-exit',
        failure_message: exit.signal ? `ended by ${exit.signal} (exit code ${exit.exitCode})` : `exited with code ${exit.exitCode}`,
      };
    }
    await this.#finish(outcome);
  }

  #commandsDone = false;

  async #streamLogs(runtime: Runtime, id: string, signal: AbortSignal): Promise<void> {
    const skip = { ...this.#state.log_chars };
    const partial = { stdout: '', stderr: '' };
    const readyLine = this.#state.ready_when;
    try {
      for await (const chunk of runtime.logs(id, { follow: true, signal })) {
        let data = chunk.data;
        if (skip[chunk.stream] > 0) {
          const n = Math.min(skip[chunk.stream], data.length);
          skip[chunk.stream] -= n;
          data = data.slice(n);
          if (data.length === 0) continue;
        }
        this.#events.append('log', { stream: chunk.stream, data });
        if (readyLine && !this.#reportedRunning) {
          const text = partial[chunk.stream] + data;
          const lines = text.split('\n');
          partial[chunk.stream] = (lines.pop() ?? '').slice(-8192);
          if (lines.some((l) => l.replace(/\r$/, '').includes(readyLine)) || partial[chunk.stream].includes(readyLine)) {
            void this.#reportRunning();
          }
        }
      }
    } catch (e) {
      if (!signal.aborted) this.deps.logger.warn({ run_id: this.runId, err: e }, 'reading the output failed');
    }
  }

  async #commandLoop(runtime: Runtime, id: string): Promise<void> {
    let skip = this.#noCommandsAtClaim && this.deps.linkUp?.() === true && !this.#commandsPending;
    while (!this.#commandsDone && !this.#work.signal.aborted) {
      if (skip) skip = false;
      else if (!this.#cancel.signal.aborted) {
        this.#commandsPending = false;
        let commands: RunCommand[] = [];
        try {
          commands = (await this.deps.client.listCommands(this.runId, this.#state.command_seq)).commands;
        } catch (e) {
          if (isApiError(e) && e.status === 409) return this.#drop(`commands refused: ${e.message}`);
          this.deps.logger.debug({ run_id: this.runId, err: e }, 'listing commands failed');
        }
        for (const command of commands.sort((a, b) => a.seq - b.seq)) {
          if (this.#work.signal.aborted || this.#cancel.signal.aborted) break;
          if (command.state === 'pending') await this.#runCommand(runtime, id, command);
          this.#state = { ...this.#state, command_seq: Math.max(this.#state.command_seq, command.seq) };
          await this.#persist();
        }
      }
      if (this.#commandsPending) continue;
      if (this.#commandsDone || this.#work.signal.aborted) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, this.deps.commandPollMs());
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#commandWake = done;
      });
      this.#commandWake = undefined;
    }
  }

  async #runCommand(runtime: Runtime, id: string, command: RunCommand): Promise<void> {
    const token = this.#state.fencing_token;
    try {
      await this.deps.client.ackCommand(command.id, { fencing_token: token });
    } catch (e) {
      this.deps.logger.warn({ run_id: this.runId, command_id: command.id, err: e }, 'ack refused');
      return;
    }
    this.#events.append('command_status', { command_id: command.id, state: 'acked' });
    let state: 'completed' | 'failed' = 'failed';
    let exitCode: number | undefined;
    let message: string | undefined;
    try {
      const handle = await runtime.exec(id, command.payload.command, {
        signal: this.#work.signal,
        ...(command.payload.env ? { env: command.payload.env } : {}),
        ...(command.payload.stdin !== undefined ? { stdin: command.payload.stdin } : {}),
      });
      for await (const chunk of handle.output) this.#events.append('log', { stream: chunk.stream, data: chunk.data, command_id: command.id });
      const exit = await handle.exit;
      exitCode = exit.exitCode;
      state = exit.exitCode === 0 ? 'completed' : 'failed';
      if (state === 'failed') message = `exited with code ${exit.exitCode}`;
    } catch (e) {
      message = (e as Error).message.slice(0, 4000);
    }
    this.#events.append('command_status', { command_id: command.id, state, ...(exitCode !== undefined ? { exit_code: exitCode } : {}), ...(message ? { message } : {}) });
    await this.#events.flush();
    await this.#retry(() =>
      this.deps.client.commandStatus(command.id, {
        fencing_token: token,
        state,
        ...(exitCode !== undefined ? { exit_code: exitCode } : {}),
        ...(message ? { message } : {}),
      }),
    );
  }

  async #reportRunning(): Promise<void> {
    if (this.#reportedRunning) return;
    this.#reportedRunning = true;
    this.#state = { ...this.#state, ready: true };
    // Saved after the report, in one write with the seq it moved (a restart between the two
    // only means `running` is not reported again, which the control plane would ignore anyway).
    await this.#report({ status: 'running' });
    await this.#persist();
  }

  /** A status report, carrying the queued events when the control plane takes them (else they are flushed first). */
  async #report(outcome: Outcome): Promise<boolean> {
    if (!this.#carryEvents) {
      await this.#events.flush();
      return (await this.#retry(() => this.deps.client.reportStatus(this.runId, { fencing_token: this.#state.fencing_token, ...outcome }))) !== undefined;
    }
    const events = await this.#events.take();
    const res = await this.#retry(() =>
      this.deps.client.reportStatus(this.runId, { fencing_token: this.#state.fencing_token, ...outcome, ...(events.length > 0 ? { events } : {}) }),
    );
    this.#events.settle(res?.next_event_seq !== undefined ? events : undefined);
    return res !== undefined;
  }

  async #finish(outcome: Outcome): Promise<void> {
    if (this.#work.signal.aborted) return;
    this.phase = 'reporting';
    if (!(await this.#report(outcome))) return;
    this.deps.logger.info({ run_id: this.runId, status: outcome.status, exit_code: outcome.exit_code, failure_kind: outcome.failure_kind }, 'finished');
    this.phase = 'done';
    this.#lease.stop();
    this.deps.onSlotFree?.();
    // The control plane gives the lease up with the terminal report; no separate release.
  }

  /** Retries a fenced call through transient failures; `undefined` once the run was dropped (409) or aborted. */
  async #retry<T>(call: () => Promise<T>): Promise<T | undefined> {
    for (let attempt = 1; !this.#work.signal.aborted; attempt++) {
      try {
        return await call();
      } catch (e) {
        if (isApiError(e) && e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429) {
          this.#drop(`${e.status} ${e.message}`);
          return undefined;
        }
        this.deps.logger.debug({ run_id: this.runId, err: e, attempt }, 'report failed; retrying');
        if (!(await sleep(backoffDelay(attempt, { baseMs: 200, capMs: 10_000 }), this.#work.signal))) return undefined;
      }
    }
    return undefined;
  }

  #dropped(): Outcome | undefined {
    return undefined;
  }

  /** The run is no longer ours: stop the workload, report nothing further. */
  #drop(reason: string): void {
    if (this.phase === 'done' || this.phase === 'dropped') return;
    this.phase = 'dropped';
    this.deps.onSlotFree?.();
    this.deps.logger.warn({ run_id: this.runId, reason }, 'dropping the run');
    this.#lease.stop();
    this.#work.abort(new Error(reason));
    this.#commandWake?.();
    void this.#stopWorkload();
  }

  #stopWorkload(): Promise<void> {
    const runtime = this.deps.runtime;
    if (!this.#instanceId || 'unavailable' in runtime) return Promise.resolve();
    this.#stopping ??= runtime.stop(this.#instanceId, { timeoutMs: this.deps.stopTimeoutMs }).catch((e) => {
      this.deps.logger.warn({ run_id: this.runId, err: e }, 'stopping the workload failed');
    });
    return this.#stopping;
  }

  async #cleanup(): Promise<void> {
    this.#lease.stop();
    this.#commandsDone = true;
    this.#commandWake?.();
    if (this.phase !== 'dropped') this.phase = 'done';
    this.#work.abort(new Error('finished'));
    const runtime = this.deps.runtime;
    if (this.#instanceId && !('unavailable' in runtime)) {
      await this.#stopWorkload();
      await runtime.remove(this.#instanceId).catch((e) => this.deps.logger.debug({ run_id: this.runId, err: e }, 'remove failed'));
    }
    await rm(join(this.deps.workRoot, this.runId), { recursive: true, force: true }).catch(() => undefined);
    await this.deps.store.remove(this.runId);
  }

  #persisting: Promise<void> = Promise.resolve();
  #persistQueued = false;
  /** Saves the state file; a save already queued (not yet started) writes the latest state, so bursts cost one write. */
  #persist(): Promise<void> {
    if (this.phase === 'done' || this.phase === 'dropped' || this.#persistQueued) return this.#persisting;
    this.#persistQueued = true;
    this.#persisting = this.#persisting
      .then(() => {
        this.#persistQueued = false;
        if (this.phase === 'done' || this.phase === 'dropped') return;
        return this.deps.store.save(this.#state);
      })
      .catch(() => undefined);
    return this.#persisting;
  }
}

function fail(kind: FailureKind, message: string): Outcome {
  return { status: 'failed', failure_kind: kind, failure_message: message.slice(0, 4000) };
}
