import { createSqlLeaseStore, leaseMigrations } from '@runt/leases';
import { pairingMigrations } from '@runt/pairing';
import { submitRunRequestSchema, type RunStatus } from '@runt/protocol';
import { countStatements, migrate, type Queryable } from '@runt/sql';
import { createTestDatabase, TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlPlaneMigrations } from '../migrations.js';
import { EventStore } from './event-store.js';
import { isRunError } from './run-error.js';
import type { RunLifecycle } from './run-lifecycle.js';
import type { RunSignals } from './run-signals.js';
import { RunStore } from './run-store.js';
import { readRunState } from './run-state.js';
import {
  fromStatuses,
  isLegalMove,
  mayRequeue,
  type RunTransition,
  type TerminalRunStatus,
} from './state-machine.js';
import { Sweeper } from './sweeper.js';
import * as transitions from './transitions.js';
import { testLifecycle } from '../../test/scheduler-fixtures.js';

/**
 * A model of one run and its lease, driven through the real transitions on a real database.
 * Which transitions apply, and where they lead, comes from the table in `state-machine.ts`;
 * every change the database shows must be a move of that table and match the model.
 */
interface Model {
  status: RunStatus;
  ws: string | null;
  runToken: number | null;
  attempt: number;
  cancelRequested: boolean;
  /** The run has a retry policy for nonzero-exit, runner-lost and timeout. */
  retry: boolean;
  /** token 0: never claimed */
  lease: { holder: string | null; token: number; live: boolean };
}
interface Real {
  t: TestDatabase;
  sweeper: Sweeper;
  lifecycle: RunLifecycle;
  runId: string;
}

const MAX_ATTEMPTS = 2;
const LEASE_MS = 60_000; // nothing expires by itself during a sequence; expiry is a step
const workstations = ['ws_a', 'ws_b'] as const;
type Ws = (typeof workstations)[number];
type TokenPick = 'current' | 'stale' | 'future';

const can = (t: RunTransition, m: Model) => fromStatuses(t).includes(m.status);
const tokenOf = (m: Model, p: TokenPick) =>
  Math.max(
    1,
    p === 'current' ? (m.runToken ?? m.lease.token) : p === 'stale' ? m.lease.token - 1 : m.lease.token + 1,
  );
/** The fenced guard, in the model: this workstation's run, the run's token, a live lease with it. */
const fenced = (m: Model, ws: Ws, token: number) =>
  m.ws === ws && m.runToken === token && m.lease.holder !== null && m.lease.live && m.lease.token === token;

async function observe(
  r: Pick<Real, 't' | 'runId'>,
): Promise<Omit<Model, 'lease' | 'retry'> & { lease: Model['lease'] | undefined }> {
  const run = (
    await r.t.db.query<{
      status: RunStatus;
      workstation_id: string | null;
      fencing_token: string | null;
      attempt: number;
      cancel_requested: boolean;
    }>('select status, workstation_id, fencing_token, attempt, cancel_requested from runs where id = $1', [
      r.runId,
    ])
  ).rows[0]!;
  const lease = (
    await r.t.db.query<{ holder: string | null; fencing_token: string; live: boolean }>(
      'select holder, fencing_token, expires_at > clock_timestamp() as live from leases where resource = $1',
      [r.runId],
    )
  ).rows[0];
  return {
    status: run.status,
    ws: run.workstation_id,
    runToken: run.fencing_token === null ? null : Number(run.fencing_token),
    attempt: run.attempt,
    cancelRequested: run.cancel_requested,
    lease: lease
      ? {
          holder: lease.holder,
          token: Number(lease.fencing_token),
          live: lease.holder !== null && lease.live,
        }
      : undefined,
  };
}

abstract class Step implements fc.AsyncCommand<Model, Real> {
  abstract readonly transition: RunTransition | 'expire';
  check = () => true;
  /** Applies the step to the database; true when the transition took effect. */
  abstract act(m: Model, r: Real): Promise<boolean>;
  /** What the model expects: whether it applies, and the model after it. */
  abstract expect(m: Model): boolean;
  async run(m: Model, r: Real): Promise<void> {
    const before = m.status;
    const applied = await this.act(m, r);
    const expected = this.expect(m); // mutates m into the expected model
    expect(applied, `${this.toString()} from ${before}`).toBe(expected);
    const seen = await observe(r);
    if (this.transition !== 'expire' && applied) {
      // an attempt that ends in the queue is a runner's requeue or a retry the policy asked for
      const back =
        seen.status === 'queued' && (this.transition === 'loseRunner' || this.transition === 'finish');
      const move = back ? (isLegalMove('requeue', before, 'queued') ? 'requeue' : 'retry') : this.transition;
      expect(isLegalMove(move, before, seen.status), `${move}: ${before} → ${seen.status}`).toBe(true);
    } else expect(seen.status).toBe(before);
    const { retry: _retry, ...want } = m;
    expect(seen).toEqual({
      ...want,
      lease: m.lease.token === 0 ? undefined : { ...m.lease, live: m.lease.holder !== null && m.lease.live },
    });
    // every attempt that ended without ending the run is kept, with its own outcome
    const kept = await r.t.db.query<{ n: string }>(
      'select count(*) as n from run_attempts where run_id = $1',
      [r.runId],
    );
    expect(Number(kept.rows[0]!.n)).toBe(m.attempt - 1);
  }
  abstract toString(): string;
}

class Offer extends Step {
  readonly transition = 'offer';
  constructor(private readonly ws: Ws) {
    super();
  }
  async act(_m: Model, r: Real) {
    return (await transitions.offer(r.t.db, [{ id: r.runId, ws: this.ws }])).length === 1;
  }
  expect(m: Model) {
    if (!can('offer', m)) return false;
    Object.assign(m, { status: 'offered', ws: this.ws });
    return true;
  }
  toString() {
    return `offer(${this.ws})`;
  }
}

class Withdraw extends Step {
  readonly transition = 'withdraw';
  constructor(private readonly ws: Ws) {
    super();
  }
  act(_m: Model, r: Real) {
    return transitions.withdraw(r.t.db, r.runId, this.ws);
  }
  expect(m: Model) {
    if (!can('withdraw', m) || m.ws !== this.ws) return false;
    Object.assign(m, { status: 'queued', ws: null });
    return true;
  }
  toString() {
    return `withdraw(${this.ws})`;
  }
}

class WithdrawStale extends Step {
  readonly transition = 'withdraw';
  async act(_m: Model, r: Real) {
    // a negative timeout: every offer is stale
    return (await transitions.withdrawStaleOffers(r.t.db, -60_000)).some((x) => x.id === r.runId);
  }
  expect(m: Model) {
    if (!can('withdraw', m)) return false;
    Object.assign(m, { status: 'queued', ws: null });
    return true;
  }
  toString() {
    return 'withdrawStaleOffers';
  }
}

class Claim extends Step {
  readonly transition = 'claim';
  constructor(
    private readonly ws: Ws,
    private readonly runner: string,
  ) {
    super();
  }
  get holder() {
    return `${this.ws}/${this.runner}`;
  }
  async act(_m: Model, r: Real) {
    return (await transitions.claim(r.t.db, r.runId, this.ws, this.holder, LEASE_MS)) !== undefined;
  }
  expect(m: Model) {
    const l = m.lease;
    if (!can('claim', m) || m.ws !== this.ws || !(l.holder === null || !l.live || l.holder === this.holder))
      return false;
    const token = l.holder === this.holder && l.live ? l.token : l.token + 1;
    m.lease = { holder: this.holder, token, live: true };
    m.runToken = token;
    if (m.status === 'offered') m.status = 'accepted';
    return true;
  }
  toString() {
    return `claim(${this.holder})`;
  }
}

/** The scheduler places the run and claims its lease for the agent's runner in one statement. */
class ClaimOnOffer extends Step {
  readonly transition = 'claimOnOffer';
  constructor(
    private readonly ws: Ws,
    private readonly runner: string,
  ) {
    super();
  }
  get holder() {
    return `${this.ws}/${this.runner}`;
  }
  async act(_m: Model, r: Real) {
    const picks = [{ id: r.runId, ws: this.ws, holder: this.holder, leaseMs: LEASE_MS }];
    return (await r.t.db.transaction((tx) => transitions.claimOnOffer(tx, picks))).length === 1;
  }
  expect(m: Model) {
    const l = m.lease;
    if (!can('claimOnOffer', m) || !(l.holder === null || !l.live || l.holder === this.holder)) return false;
    const token = l.holder === this.holder && l.live ? l.token : l.token + 1;
    m.lease = { holder: this.holder, token, live: true };
    Object.assign(m, { status: 'accepted', ws: this.ws, runToken: token });
    return true;
  }
  toString() {
    return `claimOnOffer(${this.holder})`;
  }
}

/** The agent hands back a run it never started, fenced by its token. */
class HandBack extends Step {
  readonly transition = 'handBack';
  private token = 0;
  constructor(
    private readonly ws: Ws,
    private readonly pick: TokenPick,
  ) {
    super();
  }
  async act(m: Model, r: Real) {
    this.token = tokenOf(m, this.pick);
    return (await transitions.handBack(r.t.db, r.runId, this.ws, this.token)) !== undefined;
  }
  expect(m: Model) {
    // `accepted` means never started (start moves it to `running`, and nothing moves it back)
    if (!can('handBack', m) || !fenced(m, this.ws, this.token)) return false;
    // a cancel asked while accepted ends the run instead of re-queueing it
    if (m.cancelRequested) m.status = 'cancelled';
    else Object.assign(m, { status: 'queued', ws: null, runToken: null });
    m.lease = { ...m.lease, holder: null, live: false };
    return true;
  }
  toString() {
    return `handBack(${this.ws}, ${this.pick})`;
  }
}

class Start extends Step {
  readonly transition = 'start';
  private token = 0;
  constructor(
    private readonly ws: Ws,
    private readonly pick: TokenPick,
  ) {
    super();
  }
  async act(m: Model, r: Real) {
    this.token = tokenOf(m, this.pick);
    return (await transitions.start(r.t.db, r.runId, this.ws, this.token)) !== undefined;
  }
  expect(m: Model) {
    if (!can('start', m) || !fenced(m, this.ws, this.token)) return false;
    m.status = 'running';
    return true;
  }
  toString() {
    return `start(${this.ws}, ${this.pick})`;
  }
}

class ReportEvents extends Step {
  readonly transition = 'reportEvents';
  private token = 0;
  constructor(
    private readonly ws: Ws,
    private readonly pick: TokenPick,
  ) {
    super();
  }
  async act(m: Model, r: Real) {
    this.token = tokenOf(m, this.pick);
    const next = Number(
      (await r.t.db.query<{ n: string }>('select next_event_seq as n from runs where id = $1', [r.runId]))
        .rows[0]!.n,
    );
    const json = JSON.stringify([
      { seq: next, type: 'log', payload: { stream: 'stdout', data: 'x' }, at: null },
    ]);
    return (
      (await transitions.reportEvents(r.t.db, r.runId, this.ws, this.token, {
        first: next,
        last: next,
        json,
      })) !== undefined
    );
  }
  expect(m: Model) {
    return can('reportEvents', m) && fenced(m, this.ws, this.token);
  }
  toString() {
    return `reportEvents(${this.ws}, ${this.pick})`;
  }
}

class Finish extends Step {
  readonly transition = 'finish';
  private token = 0;
  constructor(
    private readonly ws: Ws,
    private readonly pick: TokenPick,
    private readonly outcome: TerminalRunStatus,
  ) {
    super();
  }
  async act(m: Model, r: Real) {
    this.token = tokenOf(m, this.pick);
    return (
      (await transitions.finish(r.t.db, r.runId, this.ws, this.token, { status: this.outcome })) !== undefined
    );
  }
  expect(m: Model) {
    if (!can('finish', m) || !fenced(m, this.ws, this.token)) return false;
    // the one-statement path leaves a failure of a run with a retry policy to the checked one
    if (this.outcome === 'failed' && m.retry) return false;
    m.status = this.outcome;
    m.lease = { ...m.lease, holder: null, live: false };
    return true;
  }
  toString() {
    return `finish(${this.ws}, ${this.pick}, ${this.outcome})`;
  }
}

/** The agent reports a failed attempt (exit code 1) through the lifecycle: finished, or retried by the policy. */
class ReportFailure extends Step {
  readonly transition = 'finish';
  private token = 0;
  constructor(
    private readonly ws: Ws,
    private readonly pick: TokenPick,
  ) {
    super();
  }
  async act(m: Model, r: Real) {
    this.token = tokenOf(m, this.pick);
    try {
      await r.lifecycle.reportStatus(this.ws, r.runId, {
        fencing_token: this.token,
        status: 'failed',
        exit_code: 1,
      });
      return true;
    } catch (e) {
      if ((e as { code?: unknown }).code !== undefined) return false; // a refusal (RunError, LeaseError)
      throw e;
    }
  }
  expect(m: Model) {
    if (!can('finish', m) || !fenced(m, this.ws, this.token)) return false;
    m.lease = { ...m.lease, holder: null, live: false };
    if (m.retry && !m.cancelRequested && m.attempt < MAX_ATTEMPTS)
      Object.assign(m, { status: 'queued', attempt: m.attempt + 1, ws: null, runToken: null });
    else m.status = 'failed';
    return true;
  }
  toString() {
    return `reportFailure(${this.ws}, ${this.pick})`;
  }
}

/** The clock passes the lease's end (not a transition: the sweep that follows is). */
class Expire extends Step {
  readonly transition = 'expire';
  async act(_m: Model, r: Real) {
    await r.t.db.query(
      `update leases set expires_at = clock_timestamp() - interval '1 second' where resource = $1`,
      [r.runId],
    );
    return false;
  }
  expect(m: Model) {
    m.lease = { ...m.lease, live: false };
    return false;
  }
  toString() {
    return 'expire';
  }
}

class Sweep extends Step {
  readonly transition = 'loseRunner';
  async act(_m: Model, r: Real) {
    return (await r.sweeper.sweep()).lost.some((l) => l.runId === r.runId);
  }
  expect(m: Model) {
    if (m.lease.holder === null || m.lease.live) return false;
    m.lease = { ...m.lease, holder: null };
    if (!can('loseRunner', m) || m.runToken !== m.lease.token) return false;
    if (m.cancelRequested) m.status = 'cancelled';
    // an expired lease never gives an attempt back (the workload may have started)
    else if (mayRequeue(m.status, 'expired') && m.attempt < MAX_ATTEMPTS)
      Object.assign(m, { status: 'queued', attempt: m.attempt + 1, ws: null, runToken: null });
    // unless the run's retry policy names runner-lost (the user accepts a second start)
    else if (m.retry && m.attempt < MAX_ATTEMPTS)
      Object.assign(m, { status: 'queued', attempt: m.attempt + 1, ws: null, runToken: null });
    else m.status = 'failed';
    return true;
  }
  toString() {
    return 'sweep';
  }
}

class Cancel extends Step {
  readonly transition = 'cancel';
  async act(m: Model, r: Real) {
    try {
      return (await transitions.cancel(r.t.db, r.runId)) !== undefined;
    } catch (e) {
      if (isRunError(e, 'run-not-active') && !can('cancel', m)) return false;
      throw e;
    }
  }
  expect(m: Model) {
    if (!can('cancel', m)) return false;
    m.cancelRequested = true;
    if (m.status === 'queued' || m.status === 'offered') m.status = 'cancelled';
    return true;
  }
  toString() {
    return 'cancel';
  }
}

// Biased towards the agent that holds the run and its current token, so sequences get far.
const ws = fc.constantFrom<Ws>('ws_a', 'ws_a', 'ws_a', 'ws_b');
const pick = fc.constantFrom<TokenPick>('current', 'current', 'current', 'current', 'stale', 'future');
const offerStep = ws.map((w) => new Offer(w));
const claimStep = fc.tuple(ws, fc.constantFrom('r1', 'r1', 'r2')).map(([w, r]) => new Claim(w, r));
const claimOnOfferStep = fc
  .tuple(ws, fc.constantFrom('r1', 'r1', 'r2'))
  .map(([w, r]) => new ClaimOnOffer(w, r));
const startStep = fc.tuple(ws, pick).map(([w, p]) => new Start(w, p));
const eventsStep = fc.tuple(ws, pick).map(([w, p]) => new ReportEvents(w, p));
// Steps that move a run forward are listed more than once (each entry is equally likely),
// so sequences reach `running` and beyond instead of ending early in a cancel.
const steps = [
  offerStep,
  offerStep,
  ws.map((w) => new Withdraw(w)),
  fc.constant(new WithdrawStale()),
  claimStep,
  claimStep,
  claimOnOfferStep,
  fc.tuple(ws, pick).map(([w, p]) => new HandBack(w, p)),
  startStep,
  startStep,
  eventsStep,
  fc
    .tuple(ws, pick, fc.constantFrom<TerminalRunStatus>('completed', 'failed', 'cancelled', 'blocked'))
    .map(([w, p, o]) => new Finish(w, p, o)),
  fc.tuple(ws, pick).map(([w, p]) => new ReportFailure(w, p)),
  fc.constant(new Expire()),
  fc.constant(new Sweep()),
  fc.constant(new Cancel()),
];

const signals: RunSignals = {
  eventsAppended() {},
  schedule() {},
  toWorkstation() {},
  sendClaimed: () => true,
  relay: async (_tx, items) => items,
  publish: () => Promise.resolve(() => {}),
};

describe.each(TEST_BACKENDS)('run state machine on %s', (backend) => {
  let t: TestDatabase;
  let sweeper: Sweeper;
  let lifecycle: RunLifecycle;

  beforeAll(async () => {
    t = await createTestDatabase(backend);
    await migrate(t.db, [...pairingMigrations, ...leaseMigrations, ...controlPlaneMigrations]);
    for (const id of workstations)
      await t.db.query('insert into workstations (id, display_name) values ($1, $1)', [id]);
    sweeper = new Sweeper({
      db: t.db,
      logger: pino({ level: 'silent' }),
      leases: createSqlLeaseStore(t.db),
      signals,
      intervalMs: 60_000,
      offerTimeoutMs: 3_600_000,
    });
    lifecycle = testLifecycle(t.db, signals);
  });
  afterAll(async () => {
    await t?.dispose();
  });

  it('moves only as the table allows, and exactly as the model says', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        fc.commands(steps, { maxCommands: 40, size: 'max' }),
        async (retry, cmds) => {
          const { run, created } = await transitions.submit(
            t.db,
            submitRunRequestSchema.parse({
              runtime: 'fake',
              command: ['true'],
              max_attempts: MAX_ATTEMPTS,
              ...(retry
                ? { retry: { on: ['nonzero-exit', 'runner-lost', 'timeout'], backoff: { initial_s: 0 } } }
                : {}),
            }),
          );
          expect(created && isLegalMove('submit', null, run.status)).toBe(true);
          const model: Model = {
            status: 'queued',
            ws: null,
            runToken: null,
            attempt: 1,
            cancelRequested: false,
            retry,
            lease: { holder: null, token: 0, live: false },
          };
          await fc.asyncModelRun(() => ({ model, real: { t, sweeper, lifecycle, runId: run.id } }), cmds);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('ends runs past their queue timeout or run timeout only by the moves of the table', async () => {
    const { run: waiting } = await transitions.submit(
      t.db,
      submitRunRequestSchema.parse({ runtime: 'fake', command: ['true'], queue_timeout_s: 5 }),
    );
    const status = async (id: string) => (await observe({ t, runId: id })).status;
    expect(await transitions.expireQueued(t.db)).not.toContain(waiting.id); // not yet due
    await t.db.query(`update runs set created_at = now() - interval '10 seconds' where id = $1`, [
      waiting.id,
    ]);
    expect(await transitions.expireQueued(t.db)).toContain(waiting.id);
    expect(isLegalMove('expireQueued', 'queued', await status(waiting.id))).toBe(true);

    const { run } = await transitions.submit(
      t.db,
      submitRunRequestSchema.parse({ runtime: 'fake', command: ['true'], timeout_s: 5 }),
    );
    await transitions.offer(t.db, [{ id: run.id, ws: 'ws_a' }]);
    const grant = await transitions.claim(t.db, run.id, 'ws_a', 'ws_a/r1', LEASE_MS);
    await transitions.start(t.db, run.id, 'ws_a', grant!.fencingToken);
    expect((await transitions.timeOutOverdue(t.db, 0)).map((x) => x.id)).not.toContain(run.id); // not yet due
    await t.db.query(`update runs set started_at = now() - interval '10 seconds' where id = $1`, [run.id]);
    expect((await transitions.timeOutOverdue(t.db, 0)).map((x) => x.id)).toContain(run.id);
    const seen = await observe({ t, runId: run.id });
    expect(isLegalMove('timeOut', 'running', seen.status)).toBe(true);
    expect(seen.lease?.holder ?? null).toBeNull();
  });

  it('retries the failures its policy names, each attempt kept with its outcome and events', async () => {
    const { run } = await transitions.submit(
      t.db,
      submitRunRequestSchema.parse({
        runtime: 'fake',
        command: ['true'],
        retry: { on: ['timeout', 3], max_attempts: 3, backoff: { initial_s: 0 } },
      }),
    );
    expect(run.max_attempts).toBe(3);
    const runs = new RunStore(t.db);
    const status = async () => (await observe({ t, runId: run.id })).status;
    const place = async (ws: Ws) => {
      await transitions.offer(t.db, [{ id: run.id, ws }]);
      const grant = (await transitions.claim(t.db, run.id, ws, `${ws}/r1`, LEASE_MS))!;
      await transitions.start(t.db, run.id, ws, grant.fencingToken, {
        first: grant.nextEventSeq,
        last: grant.nextEventSeq,
        json: JSON.stringify([
          { seq: grant.nextEventSeq, type: 'log', payload: { stream: 'stdout', data: `on ${ws}` }, at: null },
        ]),
      });
      return grant.fencingToken;
    };
    const moved = async (transition: RunTransition, before: RunStatus, step: () => Promise<unknown>) => {
      await step();
      const after = await status();
      expect(isLegalMove(transition, before, after), `${transition}: ${before} → ${after}`).toBe(true);
      return after;
    };
    // attempt 1 exits 3 (listed): retried
    let token = await place('ws_a');
    const report = (ws: Ws, exit: number) => () =>
      lifecycle.reportStatus(ws, run.id, { fencing_token: token, status: 'failed', exit_code: exit });
    expect(await moved('retry', 'running', report('ws_a', 3))).toBe('queued');
    // attempt 2 overruns its timeout (the sweeper's backstop): retried
    token = await place('ws_b');
    await t.db.query(
      `update runs set timeout_s = 5, started_at = now() - interval '10 seconds' where id = $1`,
      [run.id],
    );
    expect(await moved('retry', 'running', () => transitions.timeOutOverdue(t.db, 0))).toBe('queued');
    // attempt 3 exits 3 again: no attempts left, failed
    token = await place('ws_a');
    expect(await moved('finish', 'running', report('ws_a', 3))).toBe('failed');

    const final = (await runs.get(run.id))!;
    const attempts = await runs.attempts(final);
    expect(attempts.map((a) => [a.attempt, a.status, a.workstation_id, a.exit_code, a.failure_kind])).toEqual(
      [
        [1, 'failed', 'ws_a', 3, 'nonzero-exit'],
        [2, 'failed', 'ws_b', null, 'timeout'],
        [3, 'failed', 'ws_a', 3, 'nonzero-exit'],
      ],
    );
    // each attempt's events are its own: its log line, then the control plane's word on it
    const events = (await new EventStore(t.db).list(run.id, 0, 100))!.events;
    for (const a of attempts) {
      const own = events.filter(
        (e) => e.seq >= a.first_event_seq && (a.last_event_seq === null || e.seq <= a.last_event_seq),
      );
      expect(own[0]!.payload).toMatchObject({ data: `on ${a.workstation_id}` });
      expect(own[own.length - 1]!.type).toBe(a.attempt < 3 ? 'error' : 'terminal_status');
    }
    expect(attempts[1]!.first_event_seq).toBe(attempts[0]!.last_event_seq! + 1);
  });

  it('gives the lease up in the transaction that ends or retries the attempt', async () => {
    // Review finding (issue 8): the lease was released after the transaction, so a retried run
    // sat in the queue with its old lease still held (a claim in that window was refused, and a
    // crash in it left the lease to expire).
    const leaseOf = async (tx: Queryable, id: string) =>
      (await tx.query<{ holder: string | null }>('select holder from leases where resource = $1', [id]))
        .rows[0];
    for (const exit of [3, 1]) {
      // exit 3: the policy retries it; exit 1: it ends
      const { run } = await transitions.submit(
        t.db,
        submitRunRequestSchema.parse({
          runtime: 'fake',
          command: ['true'],
          retry: { on: [3], max_attempts: 2, backoff: { initial_s: 0 } },
        }),
      );
      await transitions.offer(t.db, [{ id: run.id, ws: 'ws_a' }]);
      const grant = (await transitions.claim(t.db, run.id, 'ws_a', 'ws_a/r1', LEASE_MS))!;
      await transitions.start(t.db, run.id, 'ws_a', grant.fencingToken);
      const ended = await t.db.transaction(async (tx) => {
        const s = (await readRunState(tx, run.id, true))!;
        const out = await transitions.finishOrRetry(tx, s, {
          status: 'failed',
          exitCode: exit,
          failureKind: 'nonzero-exit',
        });
        // still inside the transaction: the lease is already given up
        expect((await leaseOf(tx, run.id))!.holder).toBeNull();
        return out;
      });
      expect(ended).toBe(exit === 3 ? 'retried' : 'finished');
      if (exit === 3) {
        // the retried run can be claimed at once
        await transitions.offer(t.db, [{ id: run.id, ws: 'ws_b' }]);
        expect(await transitions.claim(t.db, run.id, 'ws_b', 'ws_b/r1', LEASE_MS)).toBeDefined();
      }
    }
  });

  it('writes a retry whole or not at all: no retry event or attempt on a run that has ended', async () => {
    // Review finding (issue 8): the `error` event saying "retrying" was appended before the
    // attempt was recorded, so a retry that did not apply still left that event (and a second
    // `terminal_status`) on the run.
    const { run } = await transitions.submit(
      t.db,
      submitRunRequestSchema.parse({
        runtime: 'fake',
        command: ['true'],
        retry: { on: [3], max_attempts: 3, backoff: { initial_s: 0 } },
      }),
    );
    await transitions.offer(t.db, [{ id: run.id, ws: 'ws_a' }]);
    const grant = (await transitions.claim(t.db, run.id, 'ws_a', 'ws_a/r1', LEASE_MS))!;
    await transitions.start(t.db, run.id, 'ws_a', grant.fencingToken);
    const stale = (await readRunState(t.db, run.id))!; // running, as a slow caller read it
    await transitions.finish(t.db, run.id, 'ws_a', grant.fencingToken, { status: 'completed', exitCode: 0 });
    const before = (await new EventStore(t.db).list(run.id, 0, 100))!.events.length;
    const out = await t.db.transaction(async (tx) => {
      await tx.query('select id from runs where id = $1 for update', [run.id]);
      return transitions.finishOrRetry(tx, stale, {
        status: 'failed',
        exitCode: 3,
        failureKind: 'nonzero-exit',
      });
    });
    expect(out).toBe('finished');
    const events = (await new EventStore(t.db).list(run.id, 0, 100))!.events;
    expect(events.length).toBe(before);
    expect(await observe({ t, runId: run.id })).toMatchObject({ status: 'completed', attempt: 1 });
    const kept = await t.db.query<{ n: string }>('select count(*) as n from run_attempts where run_id = $1', [
      run.id,
    ]);
    expect(Number(kept.rows[0]!.n)).toBe(0);
  });

  it('does not retry what its policy does not name, nor a cancelled run', async () => {
    const submit = async () =>
      (
        await transitions.submit(
          t.db,
          submitRunRequestSchema.parse({
            runtime: 'fake',
            command: ['true'],
            retry: { on: [3], backoff: { initial_s: 0 } },
          }),
        )
      ).run;
    const runFailing = async (id: string, exit: number, cancelFirst = false) => {
      await transitions.offer(t.db, [{ id, ws: 'ws_a' }]);
      const grant = (await transitions.claim(t.db, id, 'ws_a', 'ws_a/r1', LEASE_MS))!;
      await transitions.start(t.db, id, 'ws_a', grant.fencingToken);
      if (cancelFirst) await transitions.cancel(t.db, id);
      await lifecycle.reportStatus('ws_a', id, {
        fencing_token: grant.fencingToken,
        status: 'failed',
        exit_code: exit,
      });
      return observe({ t, runId: id });
    };
    expect(await runFailing((await submit()).id, 1)).toMatchObject({ status: 'failed', attempt: 1 });
    expect(await runFailing((await submit()).id, 3, true)).toMatchObject({ status: 'failed', attempt: 1 });
    expect(await runFailing((await submit()).id, 3)).toMatchObject({ status: 'queued', attempt: 2 });
  });

  it('claims many offered runs in ONE statement, each only by the moves of the table', async () => {
    const submit = async () =>
      (await transitions.submit(t.db, submitRunRequestSchema.parse({ runtime: 'fake', command: ['true'] })))
        .run.id;
    const mine = [await submit(), await submit(), await submit()];
    const theirs = await submit();
    const queued = await submit();
    await transitions.offer(t.db, [...mine.map((id) => ({ id, ws: 'ws_a' })), { id: theirs, ws: 'ws_b' }]);
    let statements = 0;
    const counted = countStatements(t.db, (c) => (statements += c.statements));
    const grants = await transitions.claimMany(
      counted,
      [...mine, theirs, queued, 'run_unknown'],
      'ws_a',
      'ws_a/r9',
      LEASE_MS,
    );
    expect(statements).toBe(1);
    expect([...grants.keys()].sort()).toEqual([...mine].sort());
    for (const id of mine) {
      const seen = await observe({ t, runId: id });
      expect(isLegalMove('claim', 'offered', seen.status)).toBe(true);
      expect(seen).toMatchObject({ status: 'accepted', ws: 'ws_a', runToken: grants.get(id)!.fencingToken });
      expect(seen.lease).toMatchObject({ holder: 'ws_a/r9', live: true });
    }
    expect((await observe({ t, runId: theirs })).status).toBe('offered');
    expect((await observe({ t, runId: queued })).status).toBe('queued');
    // no lease was left behind on the runs it did not apply to
    expect((await observe({ t, runId: theirs })).lease).toBeUndefined();
    expect((await observe({ t, runId: queued })).lease).toBeUndefined();
  });

  it('reaches every move of the table', async () => {
    // The model test above is only as good as the moves it visits: walk one run through the
    // longest path (requeue, then running, then finished) and check each step is in the table.
    const { run } = await transitions.submit(
      t.db,
      submitRunRequestSchema.parse({ runtime: 'fake', command: ['true'], max_attempts: 2 }),
    );
    const status = async () => (await observe({ t, runId: run.id })).status;
    const path: Array<[RunTransition, () => Promise<unknown>]> = [
      ['offer', () => transitions.offer(t.db, [{ id: run.id, ws: 'ws_a' }])],
      ['claim', () => transitions.claim(t.db, run.id, 'ws_a', 'ws_a/r1', LEASE_MS)],
      // the runner gives the attempt back (an expired lease would fail it: at-most-once start)
      [
        'requeue',
        () =>
          t.db.transaction(async (tx) => {
            const locked = (await readRunState(tx, run.id, true))!;
            await transitions.loseRunner(tx, locked, 'released', 'released');
          }),
      ],
      // claimed on offer for ws_b's runner, which hands it back before starting it
      [
        'claimOnOffer',
        () =>
          t.db.transaction((tx) =>
            transitions.claimOnOffer(tx, [{ id: run.id, ws: 'ws_b', holder: 'ws_b/r1', leaseMs: LEASE_MS }]),
          ),
      ],
      ['handBack', () => transitions.handBack(t.db, run.id, 'ws_b', 2)],
      ['offer', () => transitions.offer(t.db, [{ id: run.id, ws: 'ws_b' }])],
      ['claim', () => transitions.claim(t.db, run.id, 'ws_b', 'ws_b/r1', LEASE_MS)],
      ['start', () => transitions.start(t.db, run.id, 'ws_b', 3)],
      ['finish', () => transitions.finish(t.db, run.id, 'ws_b', 3, { status: 'completed', exitCode: 0 })],
    ];
    for (const [transition, step] of path) {
      const before = await status();
      await step();
      expect(isLegalMove(transition, before, await status()), `${transition} from ${before}`).toBe(true);
    }
    expect(await status()).toBe('completed');
  });
});
