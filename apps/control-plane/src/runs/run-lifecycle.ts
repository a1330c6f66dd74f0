import { isLeaseError, type LeaseStore } from '@runt/leases';
import type { Database, Queryable, Statement } from '@runt/sql';
import {
  isTerminalRunStatus,
  type ClaimRunResponse,
  type ControlMessage,
  type FailureKind,
  type ReportRunStatusRequest,
  type Run,
  type RunCommand,
  type RunEventInput,
} from '@runt/protocol';
import { claimAnswer, failUnopenable } from './claim-answer.js';
import { isRunError, RunError, runNotActive } from './run-error.js';
import { SecretUnavailableError, type SecretBox } from './secret-box.js';
import type { RunSignals } from './run-signals.js';
import type { CommandStore } from './command-store.js';
import type { EventStore } from './event-store.js';
import type { RunState } from './run-state.js';
import type { RunStore } from './run-store.js';
import * as transitions from './transitions.js';
import type {
  ClaimGrant,
  EventBatch,
  FencedWrite,
  RenewWrite,
  ReportAnswer,
  SubmitRunInput,
  TerminalOutcome,
} from './transitions.js';
import { WriteBatcher } from './write-batcher.js';
import { runPathMetrics } from '../metrics.js';
import { traceMark, tracing } from '../trace.js';

export interface RunLifecycleDeps {
  db: Database;
  leases: LeaseStore;
  runs: RunStore;
  events: EventStore;
  commands: CommandStore;
  signals: RunSignals;
  /** Applied to a submit that names none (`RUNT_RUN_TIMEOUT_S`, `RUNT_QUEUE_TIMEOUT_S`). */
  defaults?: { timeoutS?: number | undefined; queueTimeoutS?: number | undefined };
  /** Seals and opens secret env entries; absent (Postgres without `RUNT_SECRET_KEY`): runs with secrets are refused. */
  secrets?: SecretBox | undefined;
  /**
   * Postgres: the statement that places a lone fresh run in its submit's own message (the
   * scheduler's `freshOffer`, given the run's item as JSON); absent, every submit asks for a
   * scheduling pass.
   */
  placeFresh?: ((items: string) => Statement[]) | undefined;
  /**
   * Claim on offer at a workstation whose link this process holds (`LinkRegistry.claimerOf`,
   * as the scheduler's): a run its submit placed there is claimed for that runner and sent
   * leased (`offer-claimed`); undefined sends it a plain offer.
   */
  claimers?: ((workstationId: string) => transitions.OfferClaimer | undefined) | undefined;
  /**
   * Sends a run claimed on offer here (the scheduler's `deliverClaimed`) and hands it back when
   * its link closed first — the pass's rule, one home; resolves to the grants handed back.
   * Absent, it is only sent (`signals.sendClaimed`) and a claim its link never carried waits
   * for its lease.
   */
  deliverClaimed?:
    | ((
        workstationId: string,
        message: ControlMessage,
        grants: transitions.ClaimGrant[],
      ) => Promise<transitions.ClaimGrant[]>)
    | undefined;
  /**
   * Holds back the cancels of a run claimed on offer here until the returned release
   * (`LinkRegistry.holdCancels`, as the scheduler's pass holds its claims): from before the
   * claim's COMMIT until its `offer-claimed` went out, so a cancel never overtakes it.
   */
  holdCancels?: ((runIds: string[]) => () => void) | undefined;
}

const conflict = (runId: string, why: string) =>
  new RunError('runner-lease-conflict', `the lease on ${runId} is not yours: ${why}`);

/**
 * What callers do to a run: the operator submits and cancels; the agent declines an offer,
 * and, all fenced, claims the lease, renews it, appends events, reports status, releases, and
 * moves commands along. It picks the transition (`transitions.ts`), answers refusals, and
 * sends the signals: a cancel publishes its own in its transaction (`signals.publish`), the
 * agent's calls signal after the commit. Every agent answer follows one order: unknown run
 * `not-found`; terminal run `run-not-active`; a fencing token that is not current, or a lease
 * that ran out by the database clock, `runner-lease-conflict`; the current token presented by
 * another workstation `forbidden` (all `RunError`s). Writes check the lease and write in one
 * transaction.
 */
export class RunLifecycle {
  // Group commit of the holders' hot writes: reports from many runs that arrive together are
  // written in one statement per kind, each caller answered with its own result (a refused
  // item takes the checked path below alone). Both transports (HTTP and the link) come here.
  readonly #events: WriteBatcher<FencedWrite & { batch: EventBatch }, number | undefined>;
  readonly #starts: WriteBatcher<FencedWrite, ReportAnswer | undefined>;
  readonly #finishes: WriteBatcher<FencedWrite & { outcome: TerminalOutcome }, ReportAnswer | undefined>;
  readonly #renewals: WriteBatcher<RenewWrite, { expiresAt: string; cancelRequested: boolean } | undefined>;
  // Submits (`POST /api/runs`, the panel) that arrive together: one insert for all of them, each
  // answered with its own run once that insert committed (durable before the answer).
  readonly #submits: WriteBatcher<SubmitRunInput, { run: Run; created: boolean }>;

  constructor(private readonly d: RunLifecycleDeps) {
    const key = (w: { runId: string }) => w.runId;
    let keyless = 0;
    this.#submits = new WriteBatcher<SubmitRunInput, { run: Run; created: boolean }>({
      kind: 'submit',
      // An idempotency key at most once per statement; runs without one never collide.
      key: (i) => (i.idempotency_key === undefined ? `#${keyless++}` : `k:${i.idempotency_key}`),
      write: (inputs) => this.submitMany(inputs),
      // A failed insert may have committed (a connection lost at COMMIT): inserting its runs
      // again could submit them twice, so its callers get the error, as a lone submit would.
      aloneOnFailure: false,
    });
    this.#events = new WriteBatcher<FencedWrite & { batch: EventBatch }, number | undefined>({
      kind: 'events',
      key,
      write: (items) => transitions.reportEventsMany(d.db, items),
    });
    this.#starts = new WriteBatcher<FencedWrite, ReportAnswer | undefined>({
      kind: 'start',
      key,
      write: (items) => transitions.startMany(d.db, items),
    });
    this.#finishes = new WriteBatcher<FencedWrite & { outcome: TerminalOutcome }, ReportAnswer | undefined>({
      kind: 'finish',
      key,
      // A finish batch rides the next scheduling pass: the pass's page, in the same transaction,
      // places queued runs onto the slots the batch freed (issue 9); alone (then asking for a
      // pass) when no scheduler runs here or that transaction failed.
      write: async (items) => {
        const f = transitions.finishStatement(items);
        const rode = d.signals.withPass?.(f.statement);
        if (rode) {
          try {
            return f.answers(await rode);
          } catch {
            // The pass logged its failure. Its transaction may still have committed (a connection
            // lost at COMMIT, or its WAL flush failed after an asynchronous COMMIT — Postgres):
            // flush first, so that the write alone below, which then finds the runs ended and
            // refuses them (`run-not-active`, final for the agent), answers from durable rows. A
            // flush that fails too fails the batch (the agent re-sends).
            await transitions.flushWal(d.db);
          }
        }
        const out = await transitions.finishMany(d.db, items);
        if (out.some((a) => a !== undefined)) d.signals.schedule();
        return out;
      },
    });
    this.#renewals = new WriteBatcher<
      RenewWrite,
      { expiresAt: string; cancelRequested: boolean } | undefined
    >({
      kind: 'renew',
      key,
      write: (items) => transitions.renewMany(d.db.priority, items),
    });
  }

  /**
   * Submits a run (`→ queued`) and asks for a scheduling pass when it is new. Submits that
   * arrive together share one insert and one pass (group commit, as {@link submitMany}); a
   * submit that fails alone (e.g. `secrets-unavailable`) fails only its own caller.
   *
   * @example
   * const { run, created } = await lifecycle.submit(submitRunRequestSchema.parse({ runtime: 'fake', command: ['true'] }));
   */
  async submit(input: SubmitRunInput): Promise<{ run: Run; created: boolean }> {
    this.#checkSecrets([input]); // refused alone, before it could fail a shared insert
    return this.#submits.submit(input);
  }

  /**
   * Submits runs (`→ queued`) in one insert statement, each with its own idempotency key
   * semantics, and asks for ONE scheduling pass when any is new. Answers in the order given.
   *
   * @example
   * const out = await lifecycle.submitMany(bodies); // [{ run, created }, …]
   */
  async submitMany(inputs: SubmitRunInput[]): Promise<Array<{ run: Run; created: boolean }>> {
    const defaults = this.d.defaults;
    const box = this.d.secrets;
    this.#checkSecrets(inputs);
    const out = await transitions.submitMany(
      this.d.db,
      defaults?.timeoutS === undefined && defaults?.queueTimeoutS === undefined
        ? inputs
        : inputs.map((input) => ({
            ...input,
            timeout_s: input.timeout_s ?? defaults.timeoutS,
            queue_timeout_s: input.queue_timeout_s ?? defaults.queueTimeoutS,
          })),
      box && ((runId, secrets) => box.seal(runId, secrets)),
      // The pass starts once the runs are visible, while their WAL is flushed (before the answer);
      // a run its submit placed already (`placeFresh`) needs none.
      (out) => {
        if (out.length === 1 && out[0]!.created && out[0]!.run.status !== 'queued')
          runPathMetrics.offers.inc();
        else if (out.some((o) => o.created)) this.d.signals.schedule('submitted');
      },
      this.d.placeFresh,
      (run) => this.#deliverHere(run),
    );
    return out;
  }

  /**
   * The same-replica path of a submit that placed its own run (issue 10): the run was offered
   * to a workstation whose link this process holds, so no notification went out and no pass is
   * needed — it is sent from here, before the submit is answered. A plain offer goes at once
   * (before the submit's WAL flush, safe as every plain offer: see docs/runs.md#scheduler).
   * Where the agent asked for claim on offer, the run is first claimed for its runner in a
   * synchronous commit (`transitions.claimFresh`), which also makes the submit durable, and
   * sent leased (`deliverClaimed`: handed back at once when its link closed first, as the
   * pass's); a claim that did not apply sends the plain offer and leaves the flush to the
   * submit. Resolves to the claimed run, if any (its claim's commit made the submit durable,
   * whether it went out or was handed back): as claimed, or as read after its hand-back
   * (queued, no lease — or whatever became of it since).
   *
   * The run's cancels are held back (`holdCancels`) from before the claim's COMMIT until the
   * offer went out, as the pass does: a cancel committed after the claim would otherwise reach
   * the agent before its `offer-claimed`, be dropped (a run it does not hold), and the run
   * would start anyway.
   */
  async #deliverHere(run: Run): Promise<Run | undefined> {
    const ws = run.workstation_id!;
    const claimer = this.d.claimers?.(ws);
    const release = claimer && this.d.holdCancels?.([run.id]);
    try {
      const grant =
        claimer && (await transitions.claimFresh(this.d.db, run.id, ws, claimer.holder, claimer.leaseMs));
      if (!grant) {
        this.d.signals.toWorkstation(ws, { type: 'offer', id: run.id, run });
        return undefined;
      }
      runPathMetrics.claimedOnOffer.inc();
      // A run with secret entries never takes this path (submitMany): the answer opens nothing.
      const message: ControlMessage = { type: 'offer-claimed', runs: [claimAnswer(grant, this.d.secrets)] };
      if (!this.d.deliverClaimed) {
        this.d.signals.sendClaimed(ws, message);
        return grant.run;
      }
      const unsent = await this.d.deliverClaimed(ws, message, [grant]);
      // Handed back (its link closed first): answered as it is now, not as claimed.
      return unsent.length === 0 ? grant.run : ((await this.d.runs.get(run.id)) ?? grant.run);
    } finally {
      release?.();
    }
  }

  /** Refuses runs with secret env entries when this control plane keeps no secrets. */
  #checkSecrets(inputs: SubmitRunInput[]): void {
    if (
      !this.d.secrets &&
      inputs.some((i) => Object.values(i.env).some((v) => typeof v !== 'string' && v.secret))
    )
      throw new RunError(
        'secrets-unavailable',
        'this control plane keeps no secrets: set RUNT_SECRET_KEY (base64 of 32 bytes) or RUNT_SECRET_KEY_FILE on every replica',
      );
  }

  /**
   * Cancels a run: queued or offered ones end at once, active ones are asked to stop (their
   * agent is told over the link). Throws `run-not-active` for a finished run; undefined for an
   * unknown one.
   *
   * @example
   * const run = await lifecycle.cancel('run_1');
   */
  async cancel(runId: string): Promise<Run | undefined> {
    let afterCommit = () => {};
    // The cancel message (and "capacity freed" when the run ended at once) is published in the
    // cancel's own transaction, so another replica holding the link hears of it exactly when it
    // is committed; the link held here is sent to after the commit.
    const out = await transitions.cancel(this.d.db, runId, async (tx, o) => {
      afterCommit = await this.d.signals.publish(
        tx,
        o.workstationId
          ? [{ workstationId: o.workstationId, message: { type: 'cancel', run_id: runId } }]
          : [],
        { capacityFreed: o.immediate },
      );
    });
    if (!out) return undefined;
    afterCommit();
    if (out.immediate) this.d.signals.eventsAppended(runId);
    return (await this.d.runs.get(runId))!;
  }

  /**
   * The workstation's agent cannot take an offer: back to the queue (no attempt used).
   * False when it was not offered to that workstation (any more).
   *
   * @example
   * if (await lifecycle.declineOffer('ws_1', 'run_1')) signals.schedule();
   */
  declineOffer(workstationId: string, runId: string): Promise<boolean> {
    return transitions.withdraw(this.d.db, runId, workstationId);
  }

  /**
   * The agent will not start a run claimed for it on offer: back to the queue (no attempt used),
   * fenced by the token it came with, only while it never started (a cancel-requested run ends
   * `cancelled` instead). What became of the run; undefined when it did not apply.
   *
   * @example
   * if (await lifecycle.handBack('ws_1', 'run_1', 3)) signals.schedule();
   */
  async handBack(workstationId: string, runId: string, token: number): Promise<transitions.HandBackOutcome> {
    const back = await transitions.handBack(this.d.db, runId, workstationId, token);
    if (back === 'queued') this.d.signals.schedule();
    if (back === 'cancelled') this.d.signals.eventsAppended(runId);
    return back;
  }

  /**
   * The runs claimed on offer for each link's runner that it has not started (re-sent when its
   * link registers again: an offer may have been lost with the link), as a claim answers them,
   * by workstation; one statement for all (none when the list is empty).
   *
   * @example
   * const again = await lifecycle.claimedOffers([{ ws: 'ws_1', holder: 'ws_1/agent-1' }]);
   */
  async claimedOffers(
    links: Array<{ ws: string; holder: string }>,
  ): Promise<Map<string, ClaimRunResponse[]>> {
    const out = new Map<string, ClaimRunResponse[]>();
    for (const g of await transitions.claimedOffers(this.d.db, links)) {
      const ws = g.run.workstation_id!;
      const answer = await this.answer(g).catch((e: unknown) => {
        if (isRunError(e, 'run-not-active')) return undefined;
        throw e;
      });
      if (answer) out.set(ws, [...(out.get(ws) ?? []), answer]);
    }
    return out;
  }

  /**
   * Takes the lease of a run offered to `workstationId` (`offered → accepted`). The same runner
   * claiming again gets the same token back (a retried claim is safe).
   *
   * @example
   * const { fencing_token, next_event_seq } = await lifecycle.claim('ws_1', 'run_1', 'agent-1', 30_000);
   */
  async claim(
    workstationId: string,
    runId: string,
    runnerId: string,
    leaseMs: number,
  ): Promise<ClaimRunResponse> {
    const holder = `${workstationId}/${runnerId}`;
    // One statement in the common case; anything unusual takes the checked path below.
    const fast = await transitions.claim(this.d.db, runId, workstationId, holder, leaseMs);
    if (fast) return this.answer(fast);
    return this.claimChecked(workstationId, runId, holder, leaseMs);
  }

  /**
   * The claim answer of a grant (`claimAnswer`, secrets opened); a run whose secrets cannot be
   * opened is failed then and there (fenced by the grant) and answered `run-not-active`.
   */
  private async answer(g: ClaimGrant): Promise<ClaimRunResponse> {
    try {
      return claimAnswer(g, this.d.secrets);
    } catch (e) {
      if (!(e instanceof SecretUnavailableError)) throw e;
      await failUnopenable(this.d.db, g, e);
      this.d.signals.eventsAppended(g.run.id);
      this.d.signals.schedule();
      throw new RunError('run-not-active', `the run failed: cannot open its secrets: ${e.message}`);
    }
  }

  private async claimChecked(
    workstationId: string,
    runId: string,
    holder: string,
    leaseMs: number,
  ): Promise<ClaimRunResponse> {
    const s = await this.d.runs.state(runId);
    if (!s) throw new RunError('not-found', 'no such run');
    if (isTerminalRunStatus(s.status)) throw runNotActive();
    if (s.workstation_id !== workstationId) {
      if (s.status === 'queued')
        throw new RunError('run-not-offered', 'the run is not offered to this workstation');
      throw new RunError('forbidden', 'the run belongs to another workstation');
    }
    const grant = await this.d.leases.claim(runId, holder, leaseMs);
    if (!(await transitions.bindClaim(this.d.db, runId, workstationId, holder, grant.fencingToken))) {
      // Cancelled or withdrawn between our read and the claim: give the lease back.
      await this.d.leases.release(runId, holder, grant.fencingToken);
      const now = await this.d.runs.state(runId);
      if (now && isTerminalRunStatus(now.status)) throw runNotActive();
      throw new RunError('run-not-offered', 'the run is no longer offered to this workstation');
    }
    const run = (await this.d.runs.get(runId))!;
    const pending = await this.d.commands.list(runId, 0);
    return this.answer({
      run,
      sealed: await this.d.runs.sealedEnv(runId),
      fencingToken: grant.fencingToken,
      expiresAt: grant.expiresAt.toISOString(),
      nextEventSeq: (await this.d.runs.state(runId))!.next_event_seq,
      pendingCommands: pending.some((c) => c.state === 'pending'),
    });
  }

  /**
   * Renews the lease; the answer carries `cancel_requested` so an agent without a link still
   * learns of a cancel. On the database's priority lane.
   *
   * @example
   * const { cancel_requested } = await lifecycle.heartbeat('ws_1', 'run_1', 3, 30_000);
   */
  async heartbeat(
    workstationId: string,
    runId: string,
    token: number,
    leaseMs: number,
  ): Promise<{ expires_at: string; cancel_requested: boolean }> {
    // On the priority lane (the lease store renews there too): a renewal must not queue behind
    // the work it protects (issue 8, defect 10). Renewals of many runs share one statement.
    const fast = await this.#renewals.submit({ runId, workstationId, token, leaseMs });
    if (fast) return { expires_at: fast.expiresAt, cancel_requested: fast.cancelRequested };
    // Refused: the same checks as ever give the answer (not-found, run-not-active, conflict, …).
    const s = this.authorize(await this.d.runs.state(runId, this.d.db.priority), workstationId, runId, token);
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
  async appendEvents(
    workstationId: string,
    runId: string,
    token: number,
    batch: RunEventInput[],
  ): Promise<number> {
    const contiguous = eventBatch(batch);
    const fast = contiguous
      ? await this.#events.submit({ runId, workstationId, token, batch: contiguous })
      : undefined;
    if (fast !== undefined) {
      this.d.signals.eventsAppended(runId);
      return fast;
    }
    const next = await this.fenced(workstationId, runId, token, (tx, s) =>
      this.d.events.append(tx, runId, s.next_event_seq, batch),
    );
    this.d.signals.eventsAppended(runId);
    return next;
  }

  /**
   * `accepted → running`, or a terminal status, optionally with the holder's last events
   * (appended first, in the same transaction). A terminal report appends the
   * `terminal_status` event, cancels open commands and gives the lease up; one with
   * `started_ms_ago` also records the start of a run that was never reported running.
   *
   * @example
   * await lifecycle.reportStatus('ws_1', 'run_1', { fencing_token: 3, status: 'completed', exit_code: 0 });
   */
  async reportStatus(
    workstationId: string,
    runId: string,
    body: ReportRunStatusRequest,
  ): Promise<ReportAnswer> {
    const events = body.events ?? [];
    const batch = events.length > 0 ? eventBatch(events) : undefined;
    const brief = body.answer === 'brief';
    // One fenced statement in the common case (accepted → running, or active → terminal with
    // the lease released); a retry, a gap or a refusal takes the checked path for its answer.
    if (events.length === 0 || batch) {
      if (tracing) traceMark(body.status === 'running' ? 'start.received' : 'finish.received', runId);
      const token = body.fencing_token;
      const fast =
        body.status === 'running'
          ? await this.#starts.submit({ runId, workstationId, token, batch, brief })
          : await this.#finishes.submit({
              runId,
              workstationId,
              token,
              batch,
              brief,
              outcome: outcomeOf(body),
            });
      if (fast) {
        if (tracing) traceMark(body.status === 'running' ? 'start.committed' : 'finish.committed', runId);
        if (body.status !== 'running' || events.length > 0) this.d.signals.eventsAppended(runId);
        // (a finish asked for its pass itself: it rode one, or asked for one after its commit)
        return fast;
      }
    }
    const ended = await this.fenced(workstationId, runId, body.fencing_token, async (tx, s) => {
      if (events.length > 0)
        s = { ...s, next_event_seq: await this.d.events.append(tx, runId, s.next_event_seq, events) };
      if (body.status === 'running') {
        await transitions.startLocked(tx, runId);
        return false;
      }
      // a start reported with the end (`started_ms_ago`) is recorded first, as if reported apart
      if (body.started_ms_ago !== undefined) await transitions.startLocked(tx, runId, body.started_ms_ago);
      // a failure the run's retry policy takes sends it back to the queue instead; the lease
      // is given up in this transaction either way
      await transitions.finishOrRetry(tx, s, outcomeOf(body));
      return true;
    });
    if (ended) this.d.signals.schedule();
    if (ended || events.length > 0) this.d.signals.eventsAppended(runId);
    const s = (await this.d.runs.state(runId))!;
    if (brief) return { status: s.status, nextEventSeq: s.next_event_seq };
    const run = (await this.d.runs.get(runId))!;
    return { status: run.status, nextEventSeq: s.next_event_seq, run };
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
    if (s && isTerminalRunStatus(s.status) && s.fencing_token === token && s.workstation_id === workstationId)
      return;
    // the lease is given up in the same transaction (loseRunner)
    await this.fenced(workstationId, runId, token, (tx, locked) =>
      transitions.loseRunner(tx, locked, 'released', 'the runner released the run'),
    );
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
    return this.fenced(workstationId, runId, token, (tx) =>
      this.d.commands.finish(tx, commandId, state, exitCode, message),
    );
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
    if (s.workstation_id !== workstationId)
      throw new RunError('forbidden', 'the run belongs to another workstation');
    return s;
  }

  /**
   * Runs `write` in ONE transaction that first checks the fencing token against a live lease
   * (`assertFenced` locks the lease row, so no claim can take it over before the commit), then
   * locks the run row and applies the same checks as {@link authorize}. A refused lease on a run
   * that has ended answers `run-not-active`; on an unknown run, 404.
   */
  private async fenced<T>(
    workstationId: string,
    runId: string,
    token: number,
    write: (tx: Queryable, s: RunState) => Promise<T>,
  ): Promise<T> {
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
  // An agent sends its events in seq order: copied and sorted only when they are not (the copy
  // and the sort's scratch array were 2.7 % of the control plane's allocations in the Postgres
  // bench; issue 9, docs/benchmarks.md).
  const sorted = inSeqOrder(events) ? events : [...events].sort((a, b) => a.seq - b.seq);
  for (let i = 1; i < sorted.length; i++) if (sorted[i]!.seq !== sorted[i - 1]!.seq + 1) return undefined;
  return {
    first: sorted[0]!.seq,
    last: sorted[sorted.length - 1]!.seq,
    json: JSON.stringify(
      sorted.map((e) => ({ seq: e.seq, type: e.type, payload: e.payload, at: e.at ?? null })),
    ),
  };
}

/** Whether `events` are in ascending seq order already (no sort needed). */
function inSeqOrder(events: RunEventInput[]): boolean {
  for (let i = 1; i < events.length; i++) if (events[i]!.seq < events[i - 1]!.seq) return false;
  return true;
}

/**
 * The outcome a terminal report records: the keys present exactly as the report gives them, set
 * one by one on one object (four conditional spreads made up to five objects per finish; issue 9).
 */
function outcomeOf(body: ReportRunStatusRequest): TerminalOutcome {
  const out: TerminalOutcome = { status: body.status as 'completed' | 'failed' | 'cancelled' | 'blocked' };
  if (body.exit_code !== undefined) out.exitCode = body.exit_code;
  const failureKind = failureOf(body);
  if (failureKind !== undefined) out.failureKind = failureKind;
  if (body.failure_message) out.message = body.failure_message;
  if (body.started_ms_ago !== undefined) out.startedMsAgo = body.started_ms_ago;
  return out;
}

function failureOf(body: ReportRunStatusRequest): FailureKind | undefined {
  if (body.status === 'completed') return undefined;
  if (body.failure_kind) return body.failure_kind;
  if (body.status === 'cancelled') return 'cancelled';
  if (body.status === 'failed')
    return body.exit_code !== undefined && body.exit_code !== 0 ? 'nonzero-exit' : 'internal';
  return undefined;
}
