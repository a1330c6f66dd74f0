import type { Logger } from 'pino';
import type { Database, QueryResult, Queryable, Statement } from '@runt/sql';
import { LINK_CHANNEL, MAX_NOTIFY_PAYLOAD, type LinkMessage } from '../link/link-relay.js';
import type { ClaimRunResponse, ControlMessage, Run } from '@runt/protocol';
import { runPathMetrics } from '../metrics.js';
import type { RunSignals } from './run-signals.js';
import type { RunRow } from './run-row.js';
import {
  claimOnOffer,
  ASYNC_COMMIT,
  confirmClaims,
  flushWal,
  FRESH_HELD_HERE,
  handBackUnsent,
  RUN_ITEM_COLUMNS,
  RUN_ITEMS_SQL,
  offer,
  SYNC_COMMIT,
  type ClaimGrant,
  type OfferClaimer,
} from './transitions.js';
import { claimAnswer, failUnopenable } from './claim-answer.js';
import { SecretUnavailableError, type SecretBox } from './secret-box.js';
import { TraceSpan, tracing } from '../trace.js';
import { statusesSql } from './state-machine.js';
import {
  CANDIDATE_ORDER_SQL,
  FITS_SQL,
  OFFERABLE_NOW_SQL,
  PLACEABLE_SQL,
  PREFERENCE_SQL,
  SLOTS_SQL,
  USED_SQL,
  pick,
  take,
  toSlot,
  type Candidate,
} from './placement.js';

export interface SchedulerOptions {
  db: Database;
  logger: Logger;
  signals: RunSignals;
  /** This process's replica id (logs); it places onto every replica's workstations. */
  replicaId: string;
  tickMs: number;
  /** Queued runs looked at per transaction (default 200). */
  pageSize?: number;
  /**
   * Claim on offer: the runner to claim for at a workstation whose agent asked for it on a link
   * this process holds (`LinkRegistry.claimerOf`); undefined offers plainly.
   */
  claimers?: (workstationId: string) => OfferClaimer | undefined;
  /** Opens the secret env entries of runs claimed on offer (their claim answers carry them). */
  secrets?: SecretBox | undefined;
  /**
   * Holds back the cancels of runs about to be claimed on offer until the returned release
   * (`LinkRegistry.holdCancels`): called before the claim's COMMIT, released once the claimed
   * offers went out, so a cancel never overtakes its run's `offer-claimed`.
   */
  holdCancels?: (runIds: string[]) => () => void;
}

/** The advisory lock key scheduling passes take turns on (any constant shared by all replicas). */
export const SCHEDULER_LOCK = 0x72756e74; // 'runt'

// A page of plain offers commits without waiting for its WAL flush (`synchronous_commit = off`
// for this transaction only): an offer holds no lease and starts nothing, so a crash of the
// database that loses the last few hundred milliseconds of them leaves those runs queued (the
// `offered → queued` move a withdraw makes anyway), and the agent's claim of such a run is
// refused (not offered to it) and it moves on. A claim is a synchronous commit, which flushes
// every earlier one, so a claimed offer is never lost. A page that claimed on offer (a lease
// the agent acts on) switches back to a synchronous commit. Saves an fsync per pass, the
// largest single cost of the offer path on a busy disk (issue 10). A page whose transaction
// carries writes riding the pass (a finish, `withNextPass`), which commit synchronously as they
// would alone, sets `on` in the page itself (`pageSql(…, sync)`) instead of `off` there and `on`
// in a statement of its own before the COMMIT: one statement less per such pass (PGlite: one
// round trip; its transactions honour the setting as Postgres' do).
//
// On Postgres every page commits asynchronously, claims and ridden writes included: the
// scheduler's lock is a transaction lock, and a synchronous COMMIT held it across the WAL fsync
// (every pass and submit of every replica queued behind it). The pass then waits for
// durability outside the lock (`flushWal`: a synchronous commit after this one, and the WAL is
// sequential) before it sends a claimed offer or answers a ridden write; its plain offers go
// at once, and the next pass starts as soon as the COMMIT returned (issues 9 and 10; see
// Scheduler.pass and docs/runs.md#scheduler). The settings (ASYNC_COMMIT, SYNC_COMMIT) are
// transitions.ts's; the synchronous one is PGlite's.

// One statement for what a page places: up to `limit` queued runs after position `after`, oldest
// first, of a runtime some workstation with a free slot offers (`f`: a run of any other runtime
// cannot be placed now, so a queue of 10,000 such runs costs one index scan, not 50 pages;
// whether `f` is empty is `any_free`, the fleet-saturated test, and its size `free_ws`), at most
// as many as the free slots of `f` (`n.page_limit`: a page cannot place more, and every run it
// reads it locks — 200 row locks a page, each a WAL record, to place the 25 runs 25 free slots
// take, before), locked `for update skip locked`
// (only the columns placement looks at; the offered rows
// come back whole from the update), and the workstations with a free slot offering one of their
// runtimes, locked `for update of w skip locked` — a scheduler never places onto a workstation
// another transaction is changing. Both come back as JSON arrays in one row; the same statement
// makes the page's commit asynchronous, or synchronous when `sync` (see ASYNC_COMMIT). `$1` is
// `after`, `$2` the page's size: a constant text (one per `capped` and `sync`), prepared once
// per connection and sent in one pipeline with the lock and the transaction's `BEGIN` (see
// readPage).
//
// The runtimes of `f` filter the queue as one array (`array(…)`, computed once), not as
// `in (select …)`: the planner turned that into a hash semi-join, which loses the queue
// index's order, so every page read and sorted every queued run to keep the first few — at
// 5,000 queued (analyzed) 2.0–3.9 ms a page, all of it while the page holds the scheduler's
// lock, against 0.3–0.4 ms reading the first `page_limit` in index order (issue 9).
// And as a containment (`array[r.runtime] <@ array(…)`), not `r.runtime = any (array(…))`: a
// filter on the rows of the queue index, never a key of `runs_runtime_status_idx` (runtime,
// status, position). The page is a prepared statement whose generic plan each connection makes
// once and keeps (no ANALYZE on a server without autovacuum): made once `runs` had grown, with
// no statistics (every queued run estimated at 1 row, and the queue index's head bloated with
// the entries of runs already claimed), it read the queue through that index — every queued
// run of the runtime, then a sort — to lock the first 25: 2,275 rows and 255 buffer hits in a
// page of the Postgres burst-batch after a 10,000-run drain, 2–5 ms a page against ~1 ms in the
// drain (pg_stat_statements and auto_explain, 2026-12-02; test/young-plans.test.ts).
//
// An empty queue reads no workstation (issue 9, links): `f` and `c` are guarded by one `exists`
// over the queue's index (`QUEUED_SQL`, probed once, in `e`: the guards and `any_free` read its
// answer), so a pass over an idle queue — the tick, or the pass a
// batch of link registrations asks for — costs one index probe instead of two walks of every
// workstation with its credential and used slots (measured: 0.3–0.9 s of database time per pass
// at ~13,000 listening workstations, load ~18 — most of the database's 1.35 ms of CPU per link
// when 19,800 agents re-linked). `any_free` is then true (nothing is known to be full: a submit
// still asks for a pass, which reads the fleet once there is a run to place).
const QUEUED_SQL = `exists (select 1 from runs r where ${OFFERABLE_NOW_SQL} and r.position > $1::bigint)`;
//
// `locked` (Postgres): the page follows PASS_LOCK_SQL, which took the scheduler's lock only if
// it saw a run to place, and the page acts only if it did (`runt.pass_locked`): a run queued
// between the two statements is left to its submit (as for a pass that ran just before it).
export const pageSql = (capped: boolean, locked = false, sync = false) => `
with e as materialized (select ${QUEUED_SQL}${locked ? ` and current_setting('runt.pass_locked', true) = 'on'` : ''} as queued
), f as materialized (
  select w.runtimes, ${SLOTS_SQL} - u.used_runs as free
    from workstations w ${USED_SQL} where (select e.queued from e) and ${PLACEABLE_SQL}
), n as (
  select ${capped ? `least($2::int, coalesce(sum(f.free), 0))::int` : `$2::int`} as page_limit from f
), q as (
  select r.id, r.position, r.runtime, r.placement_workstation_id, r.placement_labels, r.cpus, r.memory_bytes, r.ctid as tid from runs r
   where ${OFFERABLE_NOW_SQL} and r.position > $1::bigint
     and array[r.runtime] <@ array(select jsonb_array_elements_text(f.runtimes) from f)
   order by r.position limit (select page_limit from n) for update skip locked
), c as (
  select w.id, w.cpu_count, w.memory_bytes, ${SLOTS_SQL} as slots, w.prefetch, w.runtimes, w.labels,
         u.used_runs, u.used_cpus, u.used_memory
  from workstations w ${USED_SQL}
  where (select e.queued from e) and ${PLACEABLE_SQL}
    and w.runtimes ?| (select coalesce(array_agg(distinct q.runtime), '{}') from q)
  order by ${CANDIDATE_ORDER_SQL}
  limit 1000
  for update of w skip locked
)
select (select coalesce(json_agg(q order by q.position), '[]') from q) as queued,
       (select coalesce(json_agg(c order by c.used_runs, c.id), '[]') from c) as cands,
       not (select e.queued from e) or exists (select 1 from f) as any_free,
       (select count(*) from f)::int as free_ws,
       (select page_limit from n) as page_limit,
       ${sync ? SYNC_COMMIT : ASYNC_COMMIT} as async_commit`;

// The statement that inserts a fresh run already placed (`$1`: its item, as submitMany's insert
// takes it; `$2`: this replica) for a submit; see freshOffer. A constant text, so it is
// prepared once per connection (planning it per submit took 0.85 of the message's 1.8–2.1 ms
// of database time when it went as literal SQL text). The run is placed from its request's
// values before it exists, and inserted `offered` (or `queued` when nothing fits): one row
// version and its index entries, where inserting it `queued` and then updating it `offered`
// wrote two, each with its own entries in the indexes of its status (a queued row's 3, an
// offered row's 3), all under the scheduler's lock (issue 10, 2026-12-02).
// `older` (FIFO: an older queued run some free workstation could take is waiting; every queued
// run is older than this one) probes `runs_runtime_status_idx` once per runtime the free
// workstations offer: as one scan of the queue's index filtered by runtime it read every queued
// run of any other runtime — with 10,000 queued runs no free workstation offers, 3–13 ms per
// submit instead of 0.2–0.5 ms (EXPLAIN ANALYZE, 2026-12-01), all of it under the scheduler's
// lock, which serialises every submit and pass of every replica (issue 10). It runs only when some
// run is queued at all (one probe of `runs_queued_idx`; any queued run, whatever its `not_before`,
// so a backlog of retries waiting out their backoff costs one index entry, not a walk): with an
// empty queue — the common case of a lone submit — `f` is never read, where it walked every
// placeable workstation with its used slots a second time beside `c` (issue 10, 2026-12-02).
// The notification carries the row as `row_to_json` text (`held_here` is `h`'s, not a column of
// `o`): `to_jsonb(o) - 'held_here'` built a binary jsonb of the row, copied it without the key,
// then printed it — 0.06–0.2 ms (~15 %) of the statement's server CPU, before the COMMIT whose
// signal the other replica's LISTEN process waits for (a probe of 300 executions per round, 6
// rounds alternated, 2026-12-02).
const FRESH_INSERT_SQL = `with x as materialized (
  select * from ${RUN_ITEMS_SQL} where ${ASYNC_COMMIT} is not null
), f as materialized (
  select w.runtimes from workstations w ${USED_SQL} where ${PLACEABLE_SQL}
), older as (
  select 1 from (select distinct jsonb_array_elements_text(f.runtimes) as runtime from f) t
   cross join lateral (select 1 from runs r where r.runtime = t.runtime and ${OFFERABLE_NOW_SQL} limit 1) o
   where exists (select 1 from runs r where r.status in (${statusesSql('offer')}))
   limit 1
), c as (
  select w.id, w.link_replica from x, workstations w ${USED_SQL}
   where ${PLACEABLE_SQL} and not exists (select 1 from older) and ${FITS_SQL}
   order by ${PREFERENCE_SQL}
   limit 1
   for update of w skip locked
), i as (
  insert into runs (status, workstation_id, offered_at, ${RUN_ITEM_COLUMNS})
  select case when c.id is null then 'queued' else 'offered' end, c.id, case when c.id is null then null else now() end,
         ${RUN_ITEM_COLUMNS.replace(/(\w+)/g, 'x.$1')}
    from x left join c on true
  returning *
), o as (
  select i.*, null::text as l_holder, null::bigint as l_token, null::timestamptz as l_expires_at from i
), h as (
  select exists (select 1 from c where c.link_replica = $2::text) as held_here
), n as (
  select pg_notify('${LINK_CHANNEL}', case when octet_length(p.t) < ${MAX_NOTIFY_PAYLOAD} then p.t
                   else json_build_object('w', o.workstation_id, 'offer', o.id)::text end)
    from o cross join h cross join lateral (select json_build_object('w', o.workstation_id, 'offer', o.id,
                                        'row', row_to_json(o))::text as t) p
   where o.status = 'offered' and not h.held_here
)
select o.*, h.held_here, (select count(*) from n) as notified,
       set_config('${FRESH_HELD_HERE}', h.held_here::text, false) as noted from o cross join h`;

/**
 * A pass plans its statements without bitmap scans (for its transaction only): the page then
 * reads the queue index in order, whatever the table's statistics say. A backlog submitted
 * since the last `ANALYZE` of `runs` (every backlog on a server without autovacuum, like the
 * bench's; on one with it, any backlog smaller than the 10 % of the table that triggers an
 * analyze) has none: the planner expects ~2 queued runs and reads the page's queue, and the
 * lock's and the page's "is anything queued" probes, with bitmap scans — every queued run, then
 * a sort — to lock the first 25. In the 10,000-run Postgres drain that was 5.6–8.6 ms of a
 * pass's database time (0.7 ms once analyzed), under the scheduler's lock, every pass (issue 9;
 * test/scheduler-page-plan.test.ts). Sent before the lock and the page, after the writes riding
 * the pass (their plans are theirs); on Postgres in the same pipeline (no round trip more).
 */
const PASS_PLAN_SQL = `select set_config('enable_bitmapscan', 'off', true)`;

/**
 * The scheduler's lock as a statement of its own (see readPage for why it must be one), and a
 * generic plan for the placement after it from its first execution on a connection
 * (`plan_cache_mode` for this transaction only: the submit's pipeline). By default Postgres
 * plans a prepared statement's first five executions for their parameters (custom plans) and
 * only then settles on the generic plan, which is the one it keeps for this statement: each
 * custom plan of the placement (then an update after the run's insert; FRESH_INSERT_SQL now)
 * took 0.7–1.0 ms of planning (2 ms on a fresh connection) against 0.02 ms to reuse the generic
 * plan and 0.15–0.2 ms to run it, so every connection of the pool made its first five submits'
 * offers pay it — 1.5 % of the replicas latency bench's samples, most of its slowest 2 % (issue 10).
 */
const SCHEDULER_LOCK_SQL = `select pg_advisory_xact_lock(${SCHEDULER_LOCK}), set_config('plan_cache_mode', 'force_generic_plan', true)`;

/**
 * A page's lock (`$1`: after): {@link SCHEDULER_LOCK} only when a run is queued after `$1` (the
 * page's own `QUEUED_SQL` probe), noted in the transaction's `runt.pass_locked` for the page
 * (`pageSql(…, true)`), which places nothing without it. A pass over an empty queue — the pass
 * every finish, registration and tick asks for — thus never holds the lock, which it held across
 * a client round trip (its page's answer to its `COMMIT`) while a lone submit's placement
 * waited for it: 2.7 % of the samples of `pg_stat_activity` during the replicas latency bench
 * showed a submit waiting on it, the tail of the cross-replica offer (issue 10).
 */
const PASS_LOCK_SQL = `select set_config('runt.pass_locked', case when ${QUEUED_SQL}
  then (select 'on' where pg_advisory_xact_lock(${SCHEDULER_LOCK}) is not null) else 'off' end, true) as locked`;

/**
 * A fresh run placed by its submit's own message (issue 10's cross-replica offer latency): the
 * statements of its insert in ONE pipeline (`Database.pipeline`: one round trip, one
 * transaction, each statement prepared once per connection, no client round trip while the
 * lock is held) — {@link SCHEDULER_LOCK}, then one statement, read after the lock (as
 * readPage's), that places the run as a pass would — onto the least-loaded placeable
 * workstation offering its runtime, labels, pin, cpus and memory (`pick`'s order: most free
 * slots, then fewest used, then id) — inserts it already `offered` there (or `queued`), and
 * publishes the offer with `pg_notify` for the replica holding the link. It leaves the run
 * queued, for the pass the submit then asks for, when a pass could decide otherwise: an older
 * queued run that a free workstation could take is waiting (FIFO). When the chosen
 * workstation's link is held by this replica (`link_replica = $2`) nothing is published: the
 * row comes back with `held_here` and the submit sends it itself (`RunLifecycle`'s
 * deliverHere: plain, or claimed for the runner that asked for claim on offer) — the
 * same-replica path needs no pass either. The notification carries the offered row (`{w,
 * offer, row}`), so the replica holding the link sends it without a query; an older replica
 * reads only `offer` (the run id) and reads the run. The statement returns the run's row,
 * offered or queued, and notes in the session's {@link FRESH_HELD_HERE} whether it went to a
 * link held here (the submit's WAL flush in the same round trip is skipped then:
 * `transitions.submitPlaced`). The transaction commits asynchronously (`synchronous_commit =
 * off`, set by the statement); see docs/runs.md#scheduler for why an offer may go out before
 * the submit's WAL flush. `items`: a JSON array of one run item, as submitMany's insert takes.
 *
 * @example
 * await db.pipeline!([{ text: 'BEGIN' }, ...freshOffer(JSON.stringify([item]), 'cp-1'), { text: 'COMMIT' }]);
 */
export function freshOffer(items: string, replicaId: string): Statement[] {
  return [{ text: SCHEDULER_LOCK_SQL }, { text: FRESH_INSERT_SQL, params: [items, replicaId] }];
}

/**
 * A page's first round trip. On Postgres the transaction's `BEGIN`, {@link SCHEDULER_LOCK} and
 * the page go together in one pipeline (`Queryable.pipeline`), as two statements, never one: in
 * read committed each statement reads from a snapshot taken when it starts, so the page must be
 * a statement after the lock's — one statement that took the lock itself would count the
 * capacity a pass committed while it waited as still free, and offer beyond it
 * (test/scheduler-round-trips.test.ts holds the lock across such a commit). Both are prepared
 * statements, planned once per connection (the page went as literal SQL text, planned per pass,
 * before). The lock is taken only when a run is queued ({@link PASS_LOCK_SQL}), and the page
 * planned without bitmap scans ({@link PASS_PLAN_SQL}). PGlite (one connection, no lock): the
 * page alone, in the same pipeline (one call into PGlite once its plan is prepared, the
 * transaction's `BEGIN` with it). `heads`: the writes riding the pass
 * ({@link Scheduler.withNextPass}), first in the pipeline (each answered through its
 * `onResult`), or one query each before the page where there is no pipeline.
 */
async function readPage<T>(
  tx: Queryable,
  backend: Database['backend'],
  after: number,
  limit: number,
  capped: boolean,
  heads: Array<Statement & { onResult: (r: { rows: unknown[] }) => void }>,
) {
  // Writes riding the pass commit synchronously on PGlite: the page sets it (see ASYNC_COMMIT).
  // Postgres: asynchronously, the pass then waits for the flush outside the lock (see pass()).
  const sync = heads.length > 0 && backend !== 'postgres';
  const page = { text: pageSql(capped, backend === 'postgres', sync), params: [after, limit] };
  const lock = { text: PASS_LOCK_SQL, params: [after] };
  const plan = { text: PASS_PLAN_SQL };
  // PGlite (one connection, no lock) plans without bitmap scans anyway: its random page costs
  // about what a sequential one does (`PGLITE_RANDOM_PAGE_COST`) and its upkeep analyzes a
  // backlog, so the setting's statement was one call into PGlite per pass for nothing
  // (test/scheduler-page-plan.test.ts holds the plan on both stores).
  const statements: Statement[] = backend === 'postgres' ? [...heads, plan, lock, page] : [...heads, page];
  if (tx.pipeline) return tx.pipeline<T>(statements);
  let last: QueryResult<T> | undefined;
  for (const s of statements) {
    last = await tx.query<T>(s.text, s.params);
    s.onResult?.(last);
  }
  return last!;
}

/** What a scheduling page found and decided, before its writes. */
interface PageOutcome {
  last?: number;
  /** Runs the page read (and locked). */
  read?: number;
  /** The queue has no run after this page. */
  done: boolean;
  /** Runs of this page were left queued and every candidate slot is taken (or none exists). */
  full?: boolean;
  /** No candidate slot for this page's runtimes is left (the fleet may still have others). */
  exhausted: boolean;
  /** Some workstation, whatever its runtimes and labels, had a free slot when the page was read. */
  anyFree: boolean;
  /**
   * The page's candidates were every workstation with a free slot (`free_ws`), and it left
   * none of them a free slot: the fleet is full now, no later page can place anything.
   */
  filled?: boolean;
}

/**
 * Places queued runs on workstations: the runtime must be offered, every placement label must
 * match, `placement.workstation_id` pins a run, and the workstation needs a free slot
 * (`max_runs`, default `cpu_count`) plus free cpus/memory when the run asks for them. Runs are
 * taken oldest first with `for update skip locked`, so several control-plane processes on one
 * Postgres never offer a run twice. Any replica places onto any workstation: on Postgres a
 * page's transaction first takes {@link SCHEDULER_LOCK} (`pg_advisory_xact_lock`, in the same
 * round trip as `BEGIN` and the page: see readPage), so passes of several replicas take
 * turns instead of skipping each other's locked rows (a skipped run would wait for a tick). An offer for a link held by another replica is published with `pg_notify`
 * in the offering transaction (`signals.relay`); the others are pushed over the link after the
 * commit.
 *
 * `kick()` asks for a pass now (submits, finishes, registrations, capacity freed on another
 * replica); a tick runs one anyway.
 *
 * @example
 * const scheduler = new Scheduler({ db, logger, signals, replicaId: 'cp-1', tickMs: 1000 });
 * scheduler.start(); scheduler.kick(); await scheduler.stop();
 */
export class Scheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  /** Aborted by `stop()`: ends a wait that would otherwise outlast it (`durableClaims`). */
  private halt = new AbortController();
  /**
   * What passes that already committed still do outside the lock (Postgres: wait for their WAL
   * flush, then answer the writes that rode them and send their claimed offers; see pass()).
   */
  private readonly delivering = new Set<Promise<void>>();
  /** Fenced writes of claims that did not go out, retried in the background (`settle`). */
  private readonly settling = new Set<Promise<void>>();
  /**
   * The last pass left runs queued and no workstation of the fleet has a free slot (whatever
   * its runtimes and labels): a new submit cannot be placed either, so it does not cost a pass.
   * A pass that only found the workstations of its own runs full does not set it. Any other kick (a finish, a registration, a
   * sweep, a declined offer) and the tick clear it.
   */
  private saturated = false;
  /**
   * Capacity was freed here since the last pass began (a finish, a release, a hand-back): the
   * other replicas, whose schedulers may skip submits while they think the fleet is full, must
   * hear of it — from the next pass, on the COMMIT of its last page and only when that page
   * left a slot free (see pass()).
   */
  private freed = false;
  /**
   * Writes to run first in the next pass's first transaction (see {@link Scheduler.withNextPass}),
   * each answered once that transaction committed.
   */
  private preludes: Array<{
    statement: Statement;
    resolve: (rows: unknown[]) => void;
    reject: (err: unknown) => void;
  }> = [];

  constructor(private readonly o: SchedulerOptions) {}

  /** Starts the periodic tick. */
  start(): void {
    this.stopped = false;
    if (this.halt.signal.aborted) this.halt = new AbortController();
    this.timer = setInterval(() => this.kick('tick'), this.o.tickMs);
    this.timer.unref();
    this.kick();
  }

  /** Stops the tick and waits for a pass in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.halt.abort();
    clearInterval(this.timer);
    await this.running;
    await this.delivered();
    await Promise.all([...this.settling]);
    this.dropPreludes(new Error('the scheduler stopped'));
  }

  /**
   * Runs `statement` first in the next pass's first transaction, before its page
   * (issue 9: the finish refills the slot it freed). A finish batch that rides a pass this way
   * commits with the offers of the runs that take its slots — the page reads after the finish,
   * in the same transaction, so it sees the slots free — instead of committing alone and then
   * waiting for the pass in flight and the next one (~29 ms of a ~50 ms slot cycle in the
   * drain). The placement is the pass's own (FIFO, capacity, claim on offer, cross-replica
   * notify). On Postgres the statement goes in the page's pipeline (`BEGIN`, it, the lock, the
   * page: one round trip, so the pass stays 2) and the transaction commits asynchronously (the
   * scheduler's lock is free at the COMMIT); the pass then flushes the WAL (`flushWal`) outside
   * the lock, and only then resolves with the statement's rows, in the same turn as it sends the
   * page's claimed offers (its plain offers went out at the COMMIT). PGlite: a synchronous
   * commit, resolved after it. Rejects when the transaction failed (nothing of it committed,
   * unless the connection was lost at `COMMIT`), its flush failed (committed, not known durable),
   * the pass failed after its COMMIT, or the scheduler stopped first:
   * the caller then writes alone. Undefined (nothing queued) once stopped.
   *
   * @example
   * const rows = await scheduler.withNextPass(transitions.finishStatement(items).statement);
   */
  withNextPass(statement: Statement): Promise<unknown[]> | undefined {
    if (this.stopped) return undefined;
    const done = new Promise<unknown[]>((resolve, reject) => {
      this.preludes.push({ statement, resolve, reject });
    });
    this.kick('freed');
    return done;
  }

  private dropPreludes(err: Error): void {
    for (const p of this.preludes.splice(0)) p.reject(err);
  }

  /** Waits until no pass is in flight (the one more a kick during it asked for included). */
  async idle(): Promise<void> {
    await this.running;
    await this.delivered();
  }

  /** Waits for what committed passes still deliver (their flush, answers and claimed offers). */
  private async delivered(): Promise<void> {
    while (this.delivering.size > 0) await Promise.all([...this.delivering]);
  }

  /**
   * Another replica freed capacity and ran its own pass (which places onto every workstation):
   * stop skipping this replica's submits, without a pass of its own.
   */
  capacityFreedElsewhere(): void {
    this.saturated = false;
  }

  /**
   * Starts a pass now; passes never overlap, and kicks during a pass cause one more (so the
   * kicks of a burst share it). `submitted` kicks are skipped while the
   * last pass found no free slot. `freed`: capacity was freed on this replica, and the pass
   * tells the other replicas (see {@link Scheduler.freed}). Returns whether a pass will run
   * (false once stopped, or for a skipped submit).
   */
  kick(reason?: 'submitted' | 'tick' | 'freed'): boolean {
    if (this.stopped) return false;
    if (reason === 'submitted' && this.saturated) return false;
    if (reason !== 'submitted') this.saturated = false;
    if (reason === 'freed') this.freed = true;
    if (this.running) {
      this.again = true;
      return true;
    }
    // Started now, not in a later macrotask: the kicks that arrive while it runs share one more pass.
    this.running = (async () => {
      do {
        this.again = false;
        try {
          // The next pass starts once this one's last COMMIT returned: its flush, answers and
          // claimed offers go on meanwhile (`delivering`), outside the lock.
          await this.passLocked();
        } catch (e) {
          this.o.logger.warn({ err: (e as Error).message }, 'scheduling pass failed');
        }
      } while ((this.again || this.preludes.length > 0) && !this.stopped);
      this.running = undefined;
      if (this.stopped) this.dropPreludes(new Error('the scheduler stopped'));
    })();
    return true;
  }

  /**
   * One full pass over the queue, page by page. Returns the runs offered.
   *
   * @example
   * const offered = await scheduler.pass();
   */
  async pass(): Promise<Run[]> {
    const { offered, delivered } = await this.passLocked();
    await delivered;
    return offered;
  }

  /**
   * A pass's locked part (its pages' transactions, one after the other); `delivered` settles
   * once every page's answers and offers went out (after its WAL flush where it needs one).
   */
  private async passLocked(): Promise<{ offered: Run[]; delivered: Promise<void> }> {
    const offered: Run[] = [];
    const deliveries: Array<Promise<void>> = [];
    let after = 0;
    // Pages read at most as many runs as there are free slots until one of them cannot place
    // every run it read (labels, pins, cpus, memory): from then on the pass reads whole pages,
    // so runs that fit nowhere cost no more pages than before.
    let capped = true;
    this.saturated = false;
    // The notice of capacity freed before this pass began (a kick during it sets it again, for
    // the next); a pass that fails drops it (the other replicas' ticks clear their `saturated`).
    const freed = this.freed;
    this.freed = false;
    // The writes riding this pass (withNextPass): the first page's transaction runs them first.
    let preludes = this.preludes.splice(0);
    for (;;) {
      const span = tracing ? new TraceSpan() : undefined;
      span?.mark('pass.start');
      const riding = preludes;
      preludes = [];
      const written: unknown[][] = [];
      const heads = riding.map((p, k) => ({
        ...p.statement,
        onResult: (r: { rows: unknown[] }) => void (written[k] = r.rows),
      }));
      const flushes = this.o.db.backend === 'postgres';
      // Cancels of the runs this page claims wait for their offers (`holdCancels`).
      const holds: Array<() => void> = [];
      const releaseHolds = () => {
        for (const release of holds.splice(0)) release();
      };
      const transaction = this.o.db.transaction(async (tx) => {
        // The workstations that could take this page's runs are full (or there are none); runs of
        // other runtimes or labels, later in the queue or submitted next, may still fit elsewhere,
        // so the pass stops early, and counts as saturated, only when the whole fleet has no free
        // slot.
        // (`anyFree`: whether any workstation at all, whatever its runtimes and labels, has a free
        // slot, read by the page's own statement after the lock; `filled`: this page took the
        // last free slot of every such workstation, so a next page would find none.)
        const fleetFull = (p: PageOutcome) => !p.anyFree || p.filled === true;
        const isDone = (p: PageOutcome) => p.done || fleetFull(p) || p.last === undefined;
        // What goes with the COMMIT: a claim on offer grants a lease the agent starts the run
        // under, durable before it is sent (on Postgres the setting rides with the COMMIT, which
        // reads it); and capacity freed here reaches the other replicas with the COMMIT of the
        // pass's last page (no statement of its own), only when a slot is still free after it —
        // a pass that filled the fleet leaves the others right to skip their submits (issue 9:
        // the drain sent one `runt_schedule` NOTIFY per finish batch, 0.04–0.06 round trips per
        // run). Called before a claim that is the transaction's last statement (`commitWith`),
        // else after the page's writes.
        const atCommit = async (p: PageOutcome, claims: boolean, offered: Run[]) => {
          // A ridden write (a finish) is as durable as it is alone, and a claim durable before
          // its lease is sent. On Postgres the transaction commits without waiting for its WAL
          // flush (the page's ASYNC_COMMIT), so the scheduler's lock is free at the COMMIT, and
          // the pass waits for the flush after it, outside the lock, before it answers the ridden
          // writes or sends a claimed offer (`durable`, in pass(); docs/runs.md#scheduler).
          // PGlite: a synchronous commit, as before — set by the page itself when writes ride
          // the pass (readPage), else switched back to here for a claim.
          if (claims && riding.length === 0 && !flushes) {
            if (tx.atCommit) tx.atCommit(`select ${SYNC_COMMIT}`);
            else await tx.query(`select ${SYNC_COMMIT}`);
          }
          return this.o.signals.relay(
            tx,
            offered.map((run) => ({
              workstationId: run.workstation_id!,
              message: { type: 'offer', id: run.id, run },
            })),
            freed && isDone(p) && !fleetFull(p),
          );
        };
        let local: LinkMessage[] | undefined;
        const placed = await this.placePage(tx, after, capped, heads, span, holds, async (p) => {
          local = await atCommit(p, true, []);
        });
        local ??= await atCommit(placed, placed.claimed.length > 0, placed.offered);
        const done = isDone(placed);
        // Claimed on offer: links held here, one message per workstation with all its runs.
        const claimed = new Map<string, ClaimRunResponse[]>();
        const unopenable: Array<[ClaimGrant, SecretUnavailableError]> = [];
        for (const g of placed.claimed) {
          const ws = g.run.workstation_id!;
          let answer: ClaimRunResponse;
          try {
            answer = claimAnswer(g, this.o.secrets);
          } catch (e) {
            if (!(e instanceof SecretUnavailableError)) throw e;
            unopenable.push([g, e]);
            continue;
          }
          claimed.set(ws, [...(claimed.get(ws) ?? []), answer]);
        }
        for (const [workstationId, runs] of claimed)
          local.push({ workstationId, message: { type: 'offer-claimed', runs } });
        return { ...placed, done, local, saturated: fleetFull(placed), unopenable };
      });
      let page: Awaited<typeof transaction>;
      try {
        page = await transaction;
      } catch (e) {
        releaseHolds();
        for (const p of riding) p.reject(e);
        throw e;
      }
      // From here on the pass committed: the writes that rode it are settled by `deliver`, or, if
      // anything throws before it takes them over (metrics, a plain offer's send, the span),
      // rejected here — never left pending (the finish batcher keeps one write in flight: a
      // pending one would hold every finish on this replica). Their callers then write alone.
      try {
        if (page.saturated) this.saturated = true;
        runPathMetrics.offers.inc(page.offered.length + page.claimed.length);
        runPathMetrics.claimedOnOffer.inc(page.claimed.length);
        offered.push(...page.offered, ...page.claimed.map((g) => g.run));
        span?.mark('pass.committed');
        // Plain offers go out now, before durability (see ASYNC_COMMIT). What the page claimed
        // and the writes that rode it wait for its WAL flush on Postgres (`flushWal`: a synchronous
        // commit after this one; the WAL is sequential, so it flushes this one too), which runs
        // outside the lock while the next page or pass goes on: nobody acts on them before they
        // are durable. Without claims or ridden writes nothing waits (the page flushed nothing).
        const plainNow = page.local.filter((m) => m.message.type !== 'offer-claimed');
        const afterFlush = page.local.filter((m) => m.message.type === 'offer-claimed');
        // Each on its own (as the claimed ones below): one whose send throws holds no other back.
        for (const m of plainNow) {
          try {
            this.o.signals.toWorkstation(m.workstationId, m.message);
          } catch (e) {
            this.o.logger.warn(
              { err: (e as Error).message, workstation_id: m.workstationId },
              'scheduling pass: offer not sent',
            );
          }
        }
        const durable =
          flushes && (page.claimed.length > 0 || riding.length > 0)
            ? flushWal(this.o.db, { retry: false })
            : undefined;
        const deliver = async () => {
          // The claims this delivery sends (and fails, if unopenable): all of them once the flush
          // returned; after a failed flush only those read back as durable and still theirs.
          let kept = (_runId: string) => true;
          if (durable) {
            try {
              await durable;
              span?.mark('pass.flushed');
            } catch (e) {
              // Not known durable. The ridden writes are not answered: their callers write them
              // again alone, fenced (as when a COMMIT's connection is lost). The claims are read
              // back until the database answers (`durableClaims`, retried with backoff): those
              // it kept, still accepted under their token, go out as claimed; the others were
              // never durable (a crash lost them), and nobody acts on them. Without this, a
              // transient flush failure left every claim of the page accepted, unsent, until
              // the sweeper failed it runner-lost (docs/runs.md#scheduler).
              this.o.logger.warn({ err: (e as Error).message }, 'scheduling pass: WAL flush failed');
              for (const p of riding) p.reject(e);
              const durableIds = await this.durableClaims(page.claimed);
              kept = (runId) => durableIds.has(runId);
            }
          }
          // The ridden writes are answered now (a no-op for those rejected above: a promise
          // settles once), and the claimed offers go out in this same turn: an agent may get the
          // offer for a slot before its finish's answer (run-slots counts a reporting run's slot
          // as free), as it could before.
          riding.forEach((p, k) => p.resolve(written[k] ?? []));
          // Each claimed offer goes out on its own, before the writes below: one that fails (its
          // link broke) or a run that cannot be opened holds no other run of the page back.
          const unsent: ClaimGrant[] = [];
          for (const m of afterFlush) {
            if (m.message.type !== 'offer-claimed') continue;
            const runs = m.message.runs.filter((c) => kept(c.run.id));
            if (runs.length === 0) continue;
            const ids = new Set(runs.map((c) => c.run.id));
            unsent.push(
              ...this.sendClaimedHere(
                m.workstationId,
                { ...m.message, runs },
                page.claimed.filter((g) => ids.has(g.run.id)),
              ),
            );
          }
          await this.handBackUnsent(unsent);
          // A run whose secrets cannot be opened fails now (fenced), never offered again and again.
          for (const [g, e] of page.unopenable) {
            if (!kept(g.run.id)) continue;
            this.o.logger.error(
              { run_id: g.run.id, err: e.message },
              'cannot open the secrets of a run; failing it',
            );
            await this.settle(g, 'failing the run', async () => {
              if (await failUnopenable(this.o.db, g, e)) this.o.signals.eventsAppended(g.run.id);
            });
          }
          span?.end([...page.offered.map((r) => r.id), ...page.claimed.map((g) => g.run.id)]);
        };
        const delivery = deliver()
          .catch((e: unknown) => {
            // A promise settles once: this rejects only the writes `deliver` had not answered yet.
            for (const p of riding) p.reject(e);
            this.o.logger.warn({ err: (e as Error).message }, 'scheduling pass: delivery failed');
          })
          .finally(releaseHolds);
        deliveries.push(delivery);
        this.delivering.add(delivery);
        void delivery.finally(() => this.delivering.delete(delivery));
      } catch (e) {
        releaseHolds();
        for (const p of riding) p.reject(e);
        throw e;
      }
      if (page.done) break;
      if (page.offered.length + page.claimed.length < (page.read ?? 0)) capped = false;
      after = page.last!;
    }
    return { offered, delivered: Promise.all(deliveries).then(() => undefined) };
  }

  /**
   * The runs of `grants` whose claim is durable and still theirs ({@link confirmClaims}), asked
   * again with backoff (50 ms doubling to 2 s) while the database cannot answer — a lost
   * connection, a server restarting — until it does or the scheduler stops (empty then: the
   * links close with this process, and each agent's re-registration elsewhere re-sends the
   * claims that held). No deadline of its own: a claim read back after its lease's expiry is
   * either still `accepted` (the sweeper, which credits an outage to live leases, has not ended
   * it, so the agent may still hold it) or not sent.
   */
  private async durableClaims(grants: ClaimGrant[]): Promise<Set<string>> {
    if (grants.length === 0) return new Set();
    const durable = await this.untilAnswered(
      () => confirmClaims(this.o.db, grants),
      Infinity,
      'scheduling pass: claims not confirmed yet',
    );
    return durable ?? new Set();
  }

  /**
   * Sends `message` (an `offer-claimed` of `grants`) over the link held here; returns the grants
   * it did not carry — the link closed (`signals.sendClaimed` false: nothing was published), to
   * hand back ({@link handBackUnsent}). A send that throws is not known unsent (the frame may
   * have been written): nothing to hand back, the lease lapses or the agent's re-registration
   * re-sends it. One home for the pass's claimed offers and a submit's own (`deliverClaimed`).
   */
  private sendClaimedHere(
    workstationId: string,
    message: ControlMessage,
    grants: ClaimGrant[],
  ): ClaimGrant[] {
    try {
      return this.o.signals.sendClaimed(workstationId, message) ? [] : grants;
    } catch (e) {
      this.o.logger.warn(
        { err: (e as Error).message, workstation_id: workstationId },
        'claimed offer not sent',
      );
      return [];
    }
  }

  /**
   * Claims whose link closed before they went out: the agent never got them. Back to the queue
   * now, no attempt used (`transitions.handBackUnsent`, each write retried in the background
   * until it applies: {@link settle}; docs/runs.md#claim-on-offer, "A claim its link never
   * carried"); a pass is asked for. Resolves once each was tried once.
   */
  private async handBackUnsent(grants: ClaimGrant[]): Promise<void> {
    for (const g of grants)
      await this.settle(g, 'handing back a claim its link never carried', () =>
        handBackUnsent(this.o.db, g).then((back) => {
          if (back === 'queued') this.kick('freed');
          else if (back === 'cancelled') this.o.signals.eventsAppended(g.run.id);
        }),
      );
  }

  /**
   * A run a submit placed and claimed on offer itself (`RunLifecycle`'s deliverHere, for a link
   * held here): sent as the pass sends its claims, and handed back the same way when the link
   * closed first ({@link sendClaimedHere}, {@link handBackUnsent}). Resolves once sent, or once
   * the hand-back was tried, to the grants it did not carry (handed back).
   *
   * @example
   * const unsent = await scheduler.deliverClaimed('ws_1', { type: 'offer-claimed', runs: [answer] }, [grant]);
   */
  async deliverClaimed(
    workstationId: string,
    message: ControlMessage,
    grants: ClaimGrant[],
  ): Promise<ClaimGrant[]> {
    const unsent = this.sendClaimedHere(workstationId, message, grants);
    await this.handBackUnsent(unsent);
    return unsent;
  }

  /**
   * A fenced write of a claimed run that did not go out (`handBackUnsent`, `failUnopenable`):
   * tried once now and, if the database did not answer, again in the background with backoff
   * (`untilAnswered`) until it does, the grant's lease lapses (the sweeper's turn then) or the
   * scheduler stops. Before, one failed attempt left the run `accepted` until its lease lapsed
   * and the sweeper failed it runner-lost — an attempt lost for a transient failure.
   */
  private async settle(g: ClaimGrant, what: string, write: () => Promise<unknown>): Promise<void> {
    try {
      await this.unlessHalted(write());
      return;
    } catch (e) {
      this.o.logger.warn({ run_id: g.run.id, err: (e as Error).message }, `${what} failed; retrying`);
    }
    const retry = this.untilAnswered(write, Date.parse(g.expiresAt), `${what} failed`).then(() => {});
    this.settling.add(retry);
    void retry.finally(() => this.settling.delete(retry));
  }

  /**
   * `ask()` until it answers, again with backoff (50 ms doubling to 2 s) while it throws, until
   * `deadline` (ms since the epoch) or `stop()`: undefined then. `stop()` ends the wait at once:
   * a database that does not answer at all (a host gone silent, no connection timeout) would
   * otherwise hold `stop()` until TCP gives up.
   */
  private async untilAnswered<T>(
    ask: () => Promise<T>,
    deadline: number,
    what: string,
  ): Promise<T | undefined> {
    const signal = this.halt.signal;
    for (let wait = 50; ; wait = Math.min(wait * 2, 2000)) {
      if (signal.aborted || Date.now() >= deadline) return undefined;
      try {
        return await this.unlessHalted(ask());
      } catch (e) {
        this.o.logger.warn({ err: (e as Error).message }, what);
      }
      await this.unlessHalted(new Promise((r) => setTimeout(r, wait).unref()));
    }
  }

  /**
   * `asked`, or undefined as soon as `stop()` is called: a write or read the database never
   * answers must not hold `stop()` (see {@link untilAnswered}).
   */
  private unlessHalted<T>(asked: Promise<T>): Promise<T | undefined> {
    const signal = this.halt.signal;
    asked.catch(() => {}); // when halted first: nobody awaits it any more
    if (signal.aborted) return Promise.resolve(undefined);
    return new Promise<T | undefined>((resolve, reject) => {
      const halted = () => resolve(undefined);
      signal.addEventListener('abort', halted, { once: true });
      asked.then(resolve, reject).finally(() => signal.removeEventListener('abort', halted));
    });
  }

  private async placePage(
    tx: Queryable,
    after: number,
    capped: boolean,
    heads: Array<Statement & { onResult: (r: { rows: unknown[] }) => void }>,
    span: TraceSpan | undefined,
    holds: Array<() => void>,
    beforeLastClaim: (outcome: PageOutcome) => Promise<void>,
  ): Promise<PageOutcome & { offered: Run[]; claimed: ClaimGrant[] }> {
    const pageSize = this.o.pageSize ?? 200;
    const page = (
      await readPage<{
        queued: Array<RunRow & { tid: string }>;
        cands: Candidate[];
        any_free: boolean;
        free_ws: number;
        page_limit: number;
      }>(tx, this.o.db.backend, after, pageSize, capped, heads)
    ).rows[0]!;
    span?.mark('pass.page');
    const queued = { rows: page.queued };
    const anyFree = page.any_free;
    // A page shorter than its limit is the queue's last (of what the free workstations can run).
    const pageLimit = Number(page.page_limit);
    if (queued.rows.length === 0) return { offered: [], claimed: [], done: true, exhausted: false, anyFree };
    const last = Number(queued.rows[queued.rows.length - 1]!.position);
    const cands = { rows: page.cands };
    const slots = cands.rows.map(toSlot);
    // No workstation offers these runtimes with a free slot: later pages may hold others (the
    // pass decides whether to go on, see pass()).
    if (slots.length === 0)
      return {
        offered: [],
        claimed: [],
        last,
        read: queued.rows.length,
        done: queued.rows.length < pageLimit,
        full: true,
        exhausted: true,
        anyFree,
      };
    const picks: Array<{ id: string; ws: string; tid: string }> = [];
    for (const run of queued.rows) {
      const slot = pick(slots, run);
      if (!slot) continue;
      take(slot, run);
      picks.push({ id: run.id, ws: slot.id, tid: run.tid });
    }
    if (picks.length === 0)
      return {
        offered: [],
        claimed: [],
        last,
        read: queued.rows.length,
        done: queued.rows.length < pageLimit,
        full: slots.every((s) => s.freeRuns <= 0),
        exhausted: slots.every((s) => s.freeRuns <= 0),
        anyFree,
      };
    // A workstation whose agent takes offers already claimed gets its runs leased to its runner
    // in the same transaction (one statement for all of them); the others are offered plainly.
    const plain: typeof picks = [];
    const leased: Array<{ id: string; ws: string; tid: string; holder: string; leaseMs: number }> = [];
    for (const p of picks) {
      const claimer = this.o.claimers?.(p.ws);
      // A literal, not `{ ...p, ...claimer }`: two spreads per claimed run copied by the runtime (issue 9).
      if (claimer)
        leased.push({ id: p.id, ws: p.ws, tid: p.tid, holder: claimer.holder, leaseMs: claimer.leaseMs });
      else plain.push(p);
    }
    const full = slots.every((s) => s.freeRuns <= 0);
    const outcome: PageOutcome = {
      last,
      read: queued.rows.length,
      done: queued.rows.length < pageLimit,
      full: full && picks.length < queued.rows.length,
      exhausted: full,
      anyFree,
      // `c` ⊆ `f` (the same placeability, read by the same statement): as many means all of
      // them (a candidate skipped as locked makes fewer, and the pass goes on as before).
      filled: full && slots.length >= Number(page.free_ws),
    };
    // Held from before the COMMIT: a cancel can commit only after it (the row lock), but its
    // answer could be read before this pass's.
    if (leased.length > 0 && this.o.holdCancels) holds.push(this.o.holdCancels(leased.map((l) => l.id)));
    const offered = await offer(tx, plain);
    // A page of claims only (every pick's agent takes offers claimed): the claim is the
    // transaction's last statement and goes with the COMMIT (`commitWith`, Postgres: one round
    // trip instead of two; the pass registers what rides with the COMMIT first).
    let claimer: Queryable = tx;
    if (plain.length === 0 && leased.length > 0 && tx.commitWith) {
      await beforeLastClaim(outcome);
      const commitWith = tx.commitWith.bind(tx);
      claimer = { query: (text, params) => commitWith({ text, ...(params ? { params } : {}) }) };
    }
    const claimed = await claimOnOffer(claimer, leased);
    span?.mark('pass.offered');
    return { ...outcome, offered, claimed };
  }
}
