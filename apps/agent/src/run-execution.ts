import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { type ClaimRunResponse, type ControlPlaneClient, type Run } from '@runt/protocol';
import {
  claimedLeaseFrom,
  type ClaimedLease,
  type HeldLease,
  type LeaseClient,
  type LeaseLostError,
} from '@runt/leases';
import { isRuntimeError, type Runtime } from '@runt/runtime-spi';
import { LazyAbort } from './lazy-abort.js';
import { claimUntilKnown } from './run-claim.js';
import { RunCommands } from './run-commands.js';
import { RunEventLog } from './run-event-log.js';
import { cancelled, exitOutcome, timedOut, type Outcome } from './run-outcome.js';
import { followRunOutput } from './run-output.js';
import { needsWorkdir, prepareRun, type PrepareResult } from './run-prepare.js';
import { RunReporter } from './run-reporter.js';
import type { StartGate, StartPermit } from './start-gate.js';
import { traceMark, tracing } from './trace.js';
import type { RunState, RunStateStore } from './run-state-store.js';

export interface RunExecutionDeps {
  client: ControlPlaneClient;
  /** Aborted when the agent stops taking runs: a claim whose answer was lost is not asked again. */
  taking?: AbortSignal | undefined;
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
  /**
   * Gives a claimed, never started run back to the queue, fenced by its token (the agent
   * stopped taking runs while the claim was in flight). Without it the run is left to its lease.
   */
  handBack?: (runId: string, fencingToken: number) => Promise<void>;
  /** Called once the run no longer takes a slot here (terminal status reported, or dropped). */
  onSlotFree?: () => void;
  /**
   * True when the control plane takes a run's start with its end (`STATUS_STARTED_FORM` listed
   * on the link): the `running` report then waits `RUNNING_REPORT_DELAY_MS`, and a run that
   * ends within it sends one report instead of two.
   */
  takesStartWithEnd?: () => boolean;
  /**
   * The agent's start gate (`--prefetch`): at most `--max-runs` workloads run at once, the runs
   * taken ahead wait for a permit once created and journaled. None with prefetch 0: no run waits.
   */
  startGate?: StartGate | undefined;
  logger: Logger;
}

/**
 * How long a started run's `running` report waits for the run's end, when the control plane
 * takes the start with the end (issue 9: most short runs then cost one report, one link message
 * each way and one row update fewer). Longer runs show `running` this much later.
 */
export const RUNNING_REPORT_DELAY_MS = 20;

/** Why a run's work is aborted once it is done here (one reason for every run: no stack captured per run). */
const FINISHED = new Error('finished');

/** `claiming → preparing → starting → running → reporting → done`, or `dropped` when the lease is no longer ours. */
export type RunExecutionPhase = 'preparing' | 'starting' | 'running' | 'reporting' | 'done' | 'dropped';

/**
 * One held run on this agent, from a successful claim to the release of its lease: the
 * lifecycle that ties the jobs together — preparing and starting the workload
 * (`prepareRun`), following its output (`followRunOutput`), its commands (`RunCommands`), its
 * fenced reports (`RunReporter`), the lease (renewed by `@runt/leases`), cancels and the state
 * file. Every report is fenced with the claim's token; a 409 (taken over, already terminal) or a
 * lost lease drops the run: the workload is stopped and nothing further is reported.
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
  #lease!: HeldLease;
  readonly #events: RunEventLog;
  readonly #reporter: RunReporter;
  readonly #work = new AbortController();
  /** Read by every run, listened to only while an image is pulled: its signal is made then. */
  readonly #cancel = new LazyAbort();
  #cancelMessage = 'cancelled';
  /** Set when the run's `timeout_s` stopped it: the stop then ends it `failed` with `timeout`. */
  #timedOut = false;
  #timeoutTimer: NodeJS.Timeout | undefined;
  #state: RunState;
  #instanceId: string | undefined;
  #stopping: Promise<void> | undefined;
  #commands: RunCommands | undefined;
  #commandsPending = false;
  #reportedRunning: boolean;
  /** The `running` report while it is being sent (retried through an outage): the terminal report goes after it. */
  #running: Promise<void> | undefined;
  /** The terminal report is being sent: what it carries needs no journal record (`onFlushed`). */
  #ending = false;
  /** The `running` report waiting for the run's end (`RUNNING_REPORT_DELAY_MS`). */
  #runningLater: NodeJS.Timeout | undefined;
  /** The agent exits without the control plane's answer: the instance and the journal entry are left to its next start. */
  #abandoned = false;
  /** No renewal answered since the lease's local deadline passed (logged once, not per lease period). */
  #unconfirmed = false;
  /** The claim said no commands were waiting: with the link up, the first listing is skipped. */
  readonly #noCommandsAtClaim: boolean;
  /** The control plane takes queued events with a status report (`RunReporter`'s `carryEvents`). */
  readonly #carriesEvents: boolean;
  /** The runtime answered the workload's exit: nothing is left to stop, only to remove. */
  #exited = false;
  /**
   * The offered run until its workload is prepared, then dropped: its spec (the parsed offer's
   * largest part) is not kept while the run runs (issue 9, agent heap profile: ~1 KB a run that
   * scavenges found alive and copied). Undefined for a re-adopted run.
   */
  #run: Run | undefined;
  /** A working directory may exist (`#cleanup` removes it): always for a re-adopted run, whose bundle is unknown. */
  #workdir = true;
  /** The run's place at the start gate (`--prefetch`): waiting, or held until its workload exits. */
  #permit: StartPermit | undefined;

  private constructor(
    private readonly deps: RunExecutionDeps,
    run: Run | undefined,
    state: RunState,
    lease: ClaimedLease,
    adopted: boolean,
    pendingCommands?: boolean,
    /** The run's secret env values (the claim answer's `secret_env`): in the workload's env, masked in its output; never saved. */
    private readonly secrets: Record<string, string> = {},
  ) {
    this.runId = state.run_id;
    this.#run = run;
    this.#noCommandsAtClaim = pendingCommands === false;
    this.#carriesEvents = pendingCommands !== undefined;
    this.#state = state;
    this.#instanceId = state.instance_id;
    this.#reportedRunning = state.ready;
    this.#hold(lease);
    this.#events = new RunEventLog({
      client: deps.client,
      runId: state.run_id,
      fencingToken: state.fencing_token,
      nextSeq: state.next_seq,
      signal: this.#work.signal,
      onRejected: (e) => this.#drop(`event append refused: ${e.message}`),
      secrets: Object.values(secrets),
      onFlushed: (nextSeq, logChars, byReport) => {
        // Carried by the terminal report, which the control plane took: the run is over, and its
        // output position is never read again (the journal entry goes next; a restart that
        // still finds it asks the control plane, which refuses a terminal run). No record for
        // it: one journal record (a state copy, its JSON and CRC) a run fewer (issue 9, agent
        // profile). An append of its own (a 413's fallback) is noted as before.
        if (byReport && this.#ending) return;
        this.#state = { ...this.#state, next_seq: nextSeq, log_chars: logChars };
        // Not synced on its own: lost to a crash, the output is sent again (taken once).
        void this.#persist(false);
      },
    });
    this.#reporter = new RunReporter({
      client: deps.client,
      runId: state.run_id,
      fencingToken: state.fencing_token,
      events: this.#events,
      // A control plane that says whether commands wait also takes events on status reports.
      carryEvents: this.#carriesEvents,
      signal: this.#work.signal,
      onRefused: (reason) => this.#drop(reason),
      logger: deps.logger,
      secrets: Object.values(secrets),
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
    // A claim whose answer was lost is asked again until known: it may have been applied.
    const claimed = await claimUntilKnown({
      client: deps.client,
      runId: run.id,
      runnerId: deps.runnerId,
      leaseMs: deps.leaseMs,
      logger: deps.logger,
      signal: deps.taking,
    });
    if (!claimed) return undefined;
    const { claim, sentAt } = claimed;
    const exec = await RunExecution.#claimed(deps, claim, sentAt, 'claimed');
    // Stopping: the claim was answered after the agent stopped taking runs. It never started,
    // so it goes back to the queue now (an offer's `result` carries no token to do it).
    if (!exec) await deps.handBack?.(run.id, claim.fencing_token);
    return exec;
  }

  /**
   * Starts executing a run the control plane claimed for this agent's runner on offer (no claim
   * round trip). The lease was taken just before the offer was sent; its local deadline counts
   * from now, later than the control plane's by the offer's delivery time (a loopback or LAN
   * link: milliseconds, against a lease of seconds; renewals start at a third of it).
   */
  static accept(deps: RunExecutionDeps, claim: ClaimRunResponse): Promise<RunExecution | undefined> {
    return RunExecution.#claimed(deps, claim, performance.now(), 'accepted on offer');
  }

  /**
   * Holds a granted claim and starts executing it; `undefined` (nothing saved, nothing
   * started) when the agent stopped taking runs before the run was saved as held: the caller
   * hands it back. A shutdown waits for the claims in flight, so a late claim answer is never
   * started after the runtimes are closed.
   */
  static async #claimed(
    deps: RunExecutionDeps,
    claim: ClaimRunResponse,
    sentAt: number,
    how: string,
  ): Promise<RunExecution | undefined> {
    const run = claim.run;
    const stopping = () => deps.taking?.aborted === true;
    if (stopping()) {
      deps.logger.info(
        { run_id: run.id, fence: claim.fencing_token },
        'stopping: the claimed run is handed back',
      );
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
      ...(claim.run.timeout_s ? { timeout_s: claim.run.timeout_s } : {}),
      // names only: a restarted agent fetches the values again (`readoptRuns`), never from disk
      ...(claim.run.secret_env_names?.length ? { secret_env_names: claim.run.secret_env_names } : {}),
    };
    // The lease keeps the answer it is made from: its token and expiry only, not the claim with
    // its run (kept for the run's life otherwise; see `#run`).
    const lease = claimedLeaseFrom(
      run.id,
      { fencing_token: claim.fencing_token, expires_at: claim.expires_at },
      {
        runnerId: deps.runnerId,
        leaseMs: deps.leaseMs,
        claimedAt: sentAt,
      },
    );
    // Noted, not synced: the save that must be durable before the workload starts is the
    // instance id's (`onCreated`), which replaces this record while it is pending or rides in the
    // same synced batch (one record and one fsync for the claim and the start, not two serial
    // ones, however long preparing takes; issue 9). An agent killed before either is durable
    // started nothing: its successor on this state dir hands the run back (`releaseOrphans`:
    // held by a predecessor, never journaled, never started), as before for a run claimed on
    // offer whose answer it never read.
    deps.store.note(state).catch(() => undefined);
    deps.logger.info({ run_id: run.id, fence: claim.fencing_token, attempt: claim.run.attempt }, how);
    return new RunExecution(deps, claim.run, state, lease, false, claim.pending_commands, claim.secret_env);
  }

  /**
   * Picks up a run this agent held before a restart: its lease must still be ours (checked by
   * the caller with a heartbeat, whose answer and send time `confirmed` carries) and its instance
   * must exist. Output already sent is skipped.
   */
  static adopt(
    deps: RunExecutionDeps,
    state: RunState,
    confirmed: { sentAt: number; expiresAt: string },
    secrets: Record<string, string> = {},
  ): RunExecution {
    deps.logger.info({ run_id: state.run_id, instance_id: state.instance_id }, 're-adopted');
    const lease = claimedLeaseFrom(
      state.run_id,
      { fencing_token: state.fencing_token, expires_at: confirmed.expiresAt },
      { runnerId: state.runner_id, leaseMs: deps.leaseMs, claimedAt: confirmed.sentAt },
    );
    return new RunExecution(deps, undefined, state, lease, true, undefined, secrets);
  }

  /** False once the run's terminal status is reported (or it was dropped): its slot is free for the next offer. */
  get holdsSlot(): boolean {
    return this.phase !== 'done' && this.phase !== 'dropped';
  }

  /** The token of the attempt held here. */
  get fencingToken(): number {
    return this.#state.fencing_token;
  }

  /** Next seq this run's events will carry. */
  get nextEventSeq(): number {
    return this.#events.nextSeq;
  }

  /** Stops the workload (polite signal, then kill) and reports `cancelled`. Idempotent. */
  cancel(message = 'cancelled'): void {
    if (this.#cancel.aborted || this.phase === 'done' || this.phase === 'dropped') return;
    this.#cancelMessage = message;
    this.deps.logger.info({ run_id: this.runId, reason: message }, 'cancelling');
    this.#cancel.abort(new Error(message));
    // Waiting for a slot: it stops waiting now and ends `cancelled`, never started.
    if (this.#permit?.state === 'waiting') this.#releasePermit();
    // Saved before the polite signal: the workload's exit (e.g. 143) is then reported as this
    // stop even by the next agent, should this one die first (issue 8).
    this.#state = { ...this.#state, stopping: { timeout: this.#timedOut, message } };
    void this.#persist().then(() => this.#stopWorkload());
  }

  /**
   * The run's time limit, from the workload's start: past it the workload is stopped as a
   * cancel stops it (polite signal, then kill after the stop timeout) and the run is reported
   * `failed` with `timeout`. The start time is kept in the run's state, so a run re-adopted
   * after a restart is stopped at the same moment (at once when that has passed).
   */
  #armTimeout(): void {
    const { timeout_s: timeoutS, started_at_ms: startedAt } = this.#state;
    if (!timeoutS || startedAt === undefined) return;
    const leftMs = Math.max(0, startedAt + timeoutS * 1000 - Date.now());
    this.#timeoutTimer = setTimeout(() => {
      if (this.#cancel.aborted) return;
      this.#timedOut = true;
      this.cancel(`exceeded its timeout of ${timeoutS}s`);
    }, leftMs);
    this.#timeoutTimer.unref();
  }

  /** A command was queued for this run (link wake-up): look now instead of at the next poll. */
  wakeCommands(): void {
    this.#commandsPending = true;
    this.#commands?.wake();
  }

  /**
   * Keeps the lease renewed. A renewal refused (409) or failed for good drops the run (once the
   * workload has exited, its terminal report is the fenced question instead). A lease judged lost
   * only by the local clock does not: see {@link #keepAsking}.
   */
  #hold(lease: ClaimedLease): void {
    const held = this.deps.leases.hold(this.runId, lease, {
      onRenew: (_expiresAt, answer) => {
        if (this.#unconfirmed) {
          this.#unconfirmed = false;
          this.deps.logger.info({ run_id: this.runId }, 'lease confirmed by the control plane');
        }
        // `cancel_requested` in a heartbeat answer is how cancels reach an agent whose link is down.
        if (answer.cancel_requested === true) this.cancel('cancelled by request');
      },
      // A callback, not a listener on `held.signal`: no AbortController per run's lease.
      onLost: (reason: LeaseLostError) => {
        if (reason.reason === 'expired') this.#keepAsking();
        else if (this.phase !== 'reporting') this.#drop(`lease lost: ${reason.message}`);
      },
    });
    this.#lease = held;
  }

  /**
   * No renewal was answered before the lease's local deadline (the control plane is down or out
   * of reach). Only the control plane knows whether the lease is still ours — it credits its own
   * outage to live leases (`runs/outage-clock.ts`) — so the workload keeps running (its exit is
   * still awaited and reported) and the renewals go on, one local lease at a time, until the
   * control plane answers: renewed (held as before) or refused (fenced: the run is dropped and
   * its workload stopped). Before, the agent dropped the run at its local deadline, and a
   * workload that ended during an outage longer than the lease ended `runner-lost` although the
   * control plane would have taken its report (issue 8, chaos).
   */
  #keepAsking(): void {
    if (!this.#live()) return;
    if (!this.#unconfirmed) {
      this.#unconfirmed = true;
      this.deps.logger.warn(
        { run_id: this.runId },
        'lease not renewed before its local deadline (control plane unreachable?); keeping the workload and asking the control plane',
      );
    }
    this.#hold(
      claimedLeaseFrom(
        this.runId,
        { fencing_token: this.#state.fencing_token, expires_at: this.#lease.expiresAt.toISOString() },
        { runnerId: this.#state.runner_id, leaseMs: this.deps.leaseMs, claimedAt: performance.now() },
      ),
    );
  }

  /** Still held here (not reported, dropped or abandoned): the lease matters. */
  #live(): boolean {
    return this.phase !== 'done' && this.phase !== 'dropped' && !this.#abandoned;
  }

  /**
   * The agent is exiting and the control plane did not answer in time: stop here without
   * reporting, stopping or removing anything. The instance and the journal entry stay, so the
   * next start re-adopts the run and reports its real outcome (a stop begun here is saved in the
   * entry and reported as that stop).
   */
  abandon(): void {
    if (!this.#live()) return;
    this.#abandoned = true;
    this.deps.logger.warn(
      { run_id: this.runId },
      'left to the next start (no answer from the control plane)',
    );
    this.#lease.stop();
    this.#work.abort(new Error('abandoned'));
    this.#releasePermit();
    this.#commands?.stop();
  }

  /** Gives the run's start permit back (a waiting one stops waiting); once, whichever comes first. */
  #releasePermit(): void {
    const permit = this.#permit;
    if (!permit) return;
    this.#permit = undefined;
    this.deps.startGate?.release(permit);
  }

  /**
   * The start gate's wait (`--prefetch`): `true` at once with a permit free, else a promise of
   * the permit (`false`: withdrawn, or refused as the agent stops). The timeout counts from the
   * start: a run that waited takes its real start time, and one with a timeout notes it (not
   * synced: lost to a crash, the journaled creation time stands, the earlier of the two). A run
   * without a timeout is not noted for it: the journaled start time is read only to arm the
   * timeout of a re-adopted run (the end's `started_ms_ago` reads the state in memory, which the
   * run's later records carry). One journal record (a state copy, its JSON and CRC) fewer for
   * every run that waited for a slot (issue 9, agent profile with prefetch 25: nearly every run
   * of a drain waits).
   */
  #awaitSlot(gate: StartGate): boolean | Promise<boolean> {
    const permit = gate.acquire();
    this.#permit = permit;
    if (permit.state !== 'waiting') return permit.state === 'held';
    this.deps.logger.debug({ run_id: this.runId, waiting: gate.waiting }, 'waiting for a free slot');
    return (permit.granted as Promise<boolean>).then((granted) => {
      if (granted && this.#live()) {
        this.#state = { ...this.#state, started_at_ms: Date.now() };
        if (this.#state.timeout_s) void this.#persist(false);
      }
      return granted;
    });
  }

  // ---- the flow ----

  /** Prepares the offered run's workload (`prepareRun`); the run's spec is not kept past it. */
  #prepare(): Promise<PrepareResult> {
    const run = this.#run as Run;
    this.#run = undefined;
    const runtime = this.deps.runtime;
    this.#workdir = !('unavailable' in runtime) && needsWorkdir(run, runtime);
    const gate = this.deps.startGate;
    return prepareRun({
      run,
      secretEnv: this.secrets,
      runtime,
      workRoot: this.deps.workRoot,
      workstationId: this.deps.workstationId,
      download: (sha256) => this.#reporter.retry(() => this.deps.client.downloadBundle(sha256)),
      work: this.#work.signal,
      cancel: this.#cancel,
      cancelMessage: () => this.#cancelMessage,
      onStarting: () => {
        this.phase = 'starting';
      },
      onCreated: async (instanceId) => {
        this.#instanceId = instanceId;
        // the start time goes with the instance id (one journal write): the timeout counts from it
        this.#state = { ...this.#state, instance_id: instanceId, started_at_ms: Date.now() };
        // Durable before the workload starts, or it does not start: a restarted agent releases
        // (re-queues) a held run with no saved instance id as never started, so a start the
        // journal does not know of could run twice. A failed save fails the start (issue 8).
        if (tracing) traceMark('agent.save', this.runId);
        await this.deps.store.save(this.#state);
        if (tracing) traceMark('agent.journaled', this.runId);
        this.#work.signal.throwIfAborted();
      },
      beforeStart: gate ? () => this.#awaitSlot(gate) : undefined,
    });
  }

  async #execute(): Promise<void> {
    try {
      const prepared = await this.#prepare();
      if ('dropped' in prepared) return;
      if ('outcome' in prepared) return await this.#finish(prepared.outcome);
      if ('notStarted' in prepared)
        return await this.#handBackNeverStarted(
          prepared.notStarted,
          'stopping: a run waiting for a free slot is handed back to the queue',
        );
      this.phase = 'running';
      if (tracing) traceMark('agent.started', this.runId);
      this.#armTimeout();
      // The `running` report (now, or after RUNNING_REPORT_DELAY_MS) or the end's carries the
      // `started` event: no linger timer of its own (a control plane that takes no events on a
      // report, or a report that waits for a ready line: sent as before).
      if (this.#carriesEvents && !this.#state.ready_when) this.#events.holdForReport();
      this.#events.append('backend_status', {
        state: 'started',
        instance_id: this.#instanceId,
        runtime: (this.deps.runtime as Runtime).name,
      });
      // Not awaited: the exit is awaited while the report is sent (and retried through an outage),
      // so a workload that ends meanwhile is still reported with its real outcome (issue 8).
      if (!this.#state.ready_when) {
        if (this.deps.takesStartWithEnd?.())
          this.#runningLater = setTimeout(() => void this.#reportRunning(), RUNNING_REPORT_DELAY_MS);
        else void this.#reportRunning();
      }
      await this.#follow();
    } finally {
      await this.#cleanup();
    }
  }

  async #resume(): Promise<void> {
    try {
      this.phase = 'running';
      // Running already (or never started, see #follow): it never waits, and counts at the gate.
      if (this.deps.startGate) this.#permit = this.deps.startGate.force();
      const stopping = this.#state.stopping;
      if (stopping) {
        // The agent before this one began stopping it: finish that stop, report it as such.
        this.#timedOut = stopping.timeout;
        this.cancel(stopping.message);
      }
      this.#armTimeout();
      await this.#follow();
    } finally {
      await this.#cleanup();
    }
  }

  /** Streams output, runs commands, waits for the exit and reports it. */
  async #follow(): Promise<void> {
    const runtime = this.deps.runtime as Runtime;
    const id = this.#instanceId as string;
    // The follow runs under the run's work (aborted at the latest in `#cleanup`), not a
    // controller of its own: it mostly ends by itself once the instance has exited, and one
    // that has not after the tail wait below is cut off (`outputClosed`: what it reads later
    // is dropped) and ends with the work. One AbortSignal per run fewer, with its listener Map
    // and the runtime's abort listener (issue 9, agent heap profile: the run's two signals were
    // the largest of what a scavenge found alive, ~2.6 KB a run).
    /** The follow ended by itself (the instance exited and its output was read): nothing to stop, no tail to wait for. */
    let logsEnded = false;
    /** The tail wait is over: output read from now on is not sent nor acted on (the run's end is reported next). */
    let outputClosed = false;
    const logs = followRunOutput({
      runtime,
      instanceId: id,
      signal: this.#work.signal,
      skip: this.#state.log_chars,
      readyLine: this.#state.ready_when,
      ready: () => this.#reportedRunning,
      onChunk: (stream, data, bytes) => {
        if (!outputClosed) this.#events.appendOutput(stream, data, bytes);
      },
      // Gated as the output is: a ready line read after the tail wait is not sent, and the run's
      // end is being reported: a `running` report then would go alongside the terminal one, or
      // after it for a run already ended.
      onReady: () => {
        if (!outputClosed) void this.#reportRunning();
      },
      onError: (e) => this.deps.logger.warn({ run_id: this.runId, err: e }, 'reading the output failed'),
    }).then(() => {
      logsEnded = true;
    });
    this.#commands = new RunCommands({
      client: this.deps.client,
      reporter: this.#reporter,
      runtime,
      runId: this.runId,
      instanceId: id,
      fencingToken: this.#state.fencing_token,
      events: this.#events,
      afterSeq: this.#state.command_seq,
      onSeq: (seq) => {
        this.#state = { ...this.#state, command_seq: seq };
        return this.#persist();
      },
      work: this.#work.signal,
      cancel: this.#cancel,
      pollMs: this.deps.commandPollMs,
      skipFirst: this.#noCommandsAtClaim && this.deps.linkUp?.() === true && !this.#commandsPending,
      onRefused: (reason) => this.#drop(reason),
      logger: this.deps.logger,
    });
    const commands = this.#commands.run();
    let exit;
    let neverStarted = false;
    try {
      exit = await runtime.wait(id, { signal: this.#work.signal });
      if (tracing) traceMark('agent.exited', this.runId);
      this.#exited = true;
    } catch (e) {
      if (this.#work.signal.aborted) return;
      // A re-adopted instance its starter never started (the agent before this one died between
      // create and start; the adapter waited out its start grace): the workload never ran, so
      // the run goes back to the queue, as a never-started run does (at-most-once start holds),
      // rather than failing `internal` with attempts left (issue 8, chaos: 5 of 1,000).
      neverStarted = isRuntimeError(e) && e.code === 'not-started' && !this.#cancel.aborted;
      if (!neverStarted)
        this.deps.logger.warn({ run_id: this.runId, err: e }, 'waiting for the workload failed');
      exit = undefined;
    }
    // The follow ends by itself once the instance has exited (and when `#work` aborts: it
    // follows that signal); give it a moment to read the tail (a never-started one has none).
    // A plain timer, not an abortable sleep: no composite signal, listeners and AbortError per
    // run (issue 9, agent profile).
    // The follow mostly ends before the exit is seen: then no tail timer (a timer fewer per
    // run; issue 9, agent profile: AbortSignal and timers were ~14 % of the agent's CPU).
    // One still reading after it is cut off here and stopped with the work in `#cleanup`.
    let tailTimer: NodeJS.Timeout | undefined;
    try {
      if (!neverStarted && !logsEnded)
        await Promise.race([logs, new Promise<void>((r) => (tailTimer = setTimeout(r, 5_000)))]);
    } finally {
      clearTimeout(tailTimer);
      outputClosed = true;
    }
    // what the maskers held back (a possible start of a secret) goes out now, masked
    this.#events.endOutput();
    this.#commands.stop();
    await commands;
    if (this.#work.signal.aborted) return;
    if (neverStarted)
      return this.#handBackNeverStarted(id, 're-adopted run was never started; handing it back to the queue');
    await this.#finish(
      this.#timedOut
        ? timedOut(this.#cancelMessage, exit)
        : this.#cancel.aborted
          ? cancelled(this.#cancelMessage, exit)
          : exitOutcome(exit),
    );
  }

  /**
   * A run whose workload never started goes back to the queue: a re-adopted one (see #follow),
   * or one that waited for a free slot while the agent began to stop (`--prefetch`).
   */
  async #handBackNeverStarted(instanceId: string, why: string): Promise<void> {
    this.#releasePermit();
    this.deps.logger.info({ run_id: this.runId, instance_id: instanceId }, why);
    // Journaled as never started first (no instance id): should this agent die before the
    // hand-back is applied and with the instance already removed, the next one releases the run
    // (re-queued) instead of failing it `internal` as a workload that disappeared (issue 8, chaos).
    const { instance_id: _started, started_at_ms: _at, ...unstarted } = this.#state;
    this.#state = unstarted;
    await this.#persist();
    this.phase = 'reporting';
    await this.deps.handBack?.(this.runId, this.#state.fencing_token);
    this.phase = 'done';
    this.#lease.stop();
    this.deps.onSlotFree?.();
  }

  #reportRunning(): Promise<void> {
    clearTimeout(this.#runningLater);
    this.#runningLater = undefined;
    if (this.#reportedRunning) return this.#running ?? Promise.resolve();
    this.#reportedRunning = true;
    this.#state = { ...this.#state, ready: true };
    // Noted after the report, in one record with the seq it moved; not synced on its own, and
    // the terminal report does not wait for it (a restart that lost it only reports `running`
    // again, which the control plane ignores; a run that ends first forgets it unwritten).
    this.#running = this.#reporter
      .report({ status: 'running' })
      .then(() => void this.#persist(false))
      .catch((e: unknown) =>
        this.deps.logger.warn({ run_id: this.runId, err: e }, 'reporting running failed'),
      );
    return this.#running;
  }

  async #finish(outcome: Outcome): Promise<void> {
    if (this.#work.signal.aborted) return;
    this.phase = 'reporting';
    // The workload has exited (or never started): its slot is free for a run waiting to start.
    this.#releasePermit();
    // A `running` report still waiting goes with the end (`started_ms_ago`), where the control
    // plane still takes that; otherwise it goes now, before the end.
    let report = outcome;
    if (this.#runningLater) {
      if (this.deps.takesStartWithEnd?.()) {
        clearTimeout(this.#runningLater);
        this.#runningLater = undefined;
        this.#reportedRunning = true;
        const startedAt = this.#state.started_at_ms ?? Date.now();
        report = { ...outcome, started_ms_ago: Math.max(0, Date.now() - startedAt) };
      } else void this.#reportRunning();
    }
    // After the `running` report, which may still be retried: one report at a time, in order.
    await this.#running;
    if (tracing) traceMark('agent.report', this.runId);
    this.#ending = true;
    if (!(await this.#reporter.report(report))) return;
    if (tracing) traceMark('agent.reported', this.runId);
    this.deps.logger.info(
      {
        run_id: this.runId,
        status: outcome.status,
        exit_code: outcome.exit_code,
        failure_kind: outcome.failure_kind,
      },
      'finished',
    );
    this.phase = 'done';
    this.#lease.stop();
    this.deps.onSlotFree?.();
    // The control plane gives the lease up with the terminal report; no separate release.
  }

  /** The run is no longer ours: stop the workload, report nothing further. */
  #drop(reason: string): void {
    if (!this.#live()) return;
    this.phase = 'dropped';
    this.deps.onSlotFree?.();
    this.deps.logger.warn({ run_id: this.runId, reason }, 'dropping the run');
    this.#lease.stop();
    this.#work.abort(new Error(reason));
    this.#releasePermit();
    this.#commands?.stop();
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
    clearTimeout(this.#timeoutTimer);
    clearTimeout(this.#runningLater);
    this.#releasePermit();
    this.#lease.stop();
    this.#commands?.stop();
    if (this.#abandoned) return;
    if (this.phase !== 'dropped') this.phase = 'done';
    this.#work.abort(FINISHED);
    const runtime = this.deps.runtime;
    if (!('unavailable' in runtime)) {
      if (this.#instanceId) {
        // An exited workload needs no stop (one call, with its promise and the adapter's own work,
        // fewer per run; issue 9, agent heap profile); one already begun (a cancel) is awaited.
        if (!this.#exited || this.#stopping) await this.#stopWorkload();
        await runtime
          .remove(this.#instanceId)
          .catch((e) => this.deps.logger.debug({ run_id: this.runId, err: e }, 'remove failed'));
      }
      // No directory was made for a runtime that reads none (an adopted run's bundle is unknown: look).
      if (this.#workdir)
        await rm(join(this.deps.workRoot, this.runId), { recursive: true, force: true }).catch(
          () => undefined,
        );
    }
    await this.deps.store.remove(this.runId).catch((e: unknown) => {
      this.deps.logger.warn({ run_id: this.runId, err: e }, 'forgetting the run in the journal failed');
    });
  }

  /**
   * Saves the run's state in the agent's journal; resolves once it is durable (`durable`, the
   * default), or once queued (`note`: with the next durable batch). Saves of a short window
   * (this run's and every other run's) share one write, and a run saved twice in it costs one
   * record.
   */
  #persist(durable = true): Promise<void> {
    if (this.phase === 'done' || this.phase === 'dropped') return Promise.resolve();
    const store = this.deps.store;
    return (durable ? store.save(this.#state) : store.note(this.#state)).catch((e: unknown) => {
      this.deps.logger.warn({ run_id: this.runId, err: e }, 'saving the run state failed');
    });
  }
}
