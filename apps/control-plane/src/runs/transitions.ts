import { leaseSql, releaseLease } from '@runt/leases';
import { isConnectionLost, POOL_MAX, type Database, type Queryable, type Statement } from '@runt/sql';
import {
  isTerminalRunStatus,
  splitSecretEnv,
  type FailureKind,
  type Run,
  type RunStatus,
  type submitRunRequestSchema,
} from '@runt/protocol';
import type { z } from 'zod';
import { runPathMetrics } from '../metrics.js';
import { cancelOpenCommands } from './command-store.js';
import { appendSystemEvent } from './event-store.js';
import { runNotActive } from './run-error.js';
import { newRunId } from './run-id.js';
import { iso, SELECT_RUN, toRun, type RunRow } from './run-row.js';
import { retryDelayS } from './retry-policy.js';
import type { SealedEnv } from './secret-box.js';
import { readRunState, type RunState } from './run-state.js';
import { mayRequeue, statusesSql, type LostCause, type TerminalRunStatus } from './state-machine.js';
import { traceAt, traceMark, tracing } from '../trace.js';

/**
 * Every write of a run's status lives in this file: one function per transition of
 * `state-machine.ts`, each one SQL statement or one transaction, its guard built from that
 * table. The fenced ones (start, report events, finish) check the fencing token against a live
 * lease in the same statement; the lifecycle decides which to call and answers refusals.
 */

/** A validated submit body (defaults applied). */
export type SubmitRunInput = z.output<typeof submitRunRequestSchema>;

/** A batch of holder events, already checked to be contiguous (`first`..`last`), as JSON for `jsonb_to_recordset`. */
export interface EventBatch {
  first: number;
  last: number;
  json: string;
}

/** What a terminal report records. */
export interface TerminalOutcome {
  status: TerminalRunStatus;
  exitCode?: number;
  failureKind?: FailureKind;
  message?: string;
  /**
   * The workload started this many ms before the report, which is the first its runner sends
   * (`started_ms_ago`): a run still `accepted` gets its `started_at` with its end.
   */
  startedMsAgo?: number;
}

/** How a run ended when its runner went away (`retried`: its retry policy sent it back to the queue). */
export type LostOutcome = 'requeued' | 'retried' | 'failed' | 'cancelled';

/** A granted claim. */
export interface ClaimGrant {
  run: Run;
  /** The run's sealed secret env entries (opened only into the claim answer, see `claim-answer.ts`). */
  sealed: SealedEnv | null;
  fencingToken: number;
  expiresAt: string;
  nextEventSeq: number;
  pendingCommands: boolean;
}

const ACTIVE = statusesSql('reportEvents');

// A transaction's commit without waiting for its WAL flush (made durable later by a
// synchronous commit after it: `flushWal`), and a synchronous one: one home for the insert,
// the flushes, the read-backs and the scheduler's passes. `set_config(…, true)`: this
// transaction only, usable inside a statement (`where … is not null`).
export const ASYNC_COMMIT = `set_config('synchronous_commit', 'off', true)`;
export const SYNC_COMMIT = `set_config('synchronous_commit', 'on', true)`;

// Lock order (docs/runs.md "Lock order"): a statement that may wait for the rows of several
// runs locks them first, in id order — a `materialized` CTE (`with o as ${runsLockedById(…)}`)
// its writes join, so its rows come, and are locked, in that order before the writes touch any,
// whatever plan the statement gets — and the leases it writes after their runs, by resource
// (`leaseSql.lockedByKeys`: a primary-key probe per lease, in resource order, whatever the
// statistics of `leases` were when the plan was made). Two statements touching the same runs then never each hold a row
// the other waits for (40P01: Postgres ends one of them). `no key update`: the lock an UPDATE
// takes anyway (a foreign key's `key share` still passes). `from`: joins the condition reads.
// A batch's rows are found by their keys, `r.id = any (array(select … from i))` (an InitPlan
// the primary key is probed with), not `r.id in (select … from i)`: the planner cannot see how
// few rows a JSON batch has and made that a hash semi-join over a scan of every run (and, for
// the leases, of every lease ever held) — test runs-indexes.
const runsLockedById = (where: string, from = '') =>
  `materialized (select r.id from runs r${from} where ${where} order by r.id for no key update of r)`;

// Whether run `id` (a column of the statement's rows) has a pending command, from ONE lookup of
// run_commands for every run of the statement (`ids`: a query of their ids), made once (an
// InitPlan), not a correlated `exists` per row: that was a scan of run_commands started again for
// each claimed run — 25 per claim-on-offer pass, each a new heap scan, which on PGlite also asks
// the file system for the table's size (an `fstat`) — 0.06 ms of the control plane's CPU per
// claimed run on PGlite (issue 9, docs/benchmarks.md). On Postgres the same single index scan.
const pendingCommandsSql = (id: string, ids: string) =>
  `${id} = any (array(select c.run_id from run_commands c where c.run_id = any (array(${ids})) and c.state = 'pending'))`;

// The lease claim of `@runt/leases` folded into one statement with the runs'
// `offered → accepted`, for any number of runs of one workstation (`$1`: a JSON array of run
// ids), so a claim of many is one round trip. The lease rules are leases' own SQL. A lease
// granted on a run that changed under it comes back without a run row (the caller gives it back).
// Its runs are locked in id order each by its own probe of the primary key (as `itemsLocked`
// does): found as one array (runsLockedById), the step was a Seq Scan of `runs` in the generic
// plan a connection made while `runs` was young, and kept — 147 buffer hits, ~0.85 ms for a claim
// of one run after 4,000 cross-replica samples (test young-plans; issue 10, docs/benchmarks.md).
const CLAIM_SQL = `
with p as (select value as id from jsonb_array_elements_text($1::jsonb)),
o as materialized (
  select (select r.id from runs r where r.id = k.id for no key update of r) as id
    from (select p.id from p order by p.id) k), l as (
  ${leaseSql.claim({
    resource: 'p.id',
    holder: '$3',
    ttlMs: '$4',
    // each run locked (in id order) before its lease, the leases claimed in id order too
    from: 'p join o on o.id = p.id',
    orderBy: 'p.id',
    when: `exists (select 1 from runs q where q.id = p.id and q.workstation_id = $2 and q.status in (${statusesSql('claim')}))`,
  })}
), u as (
  update runs r set status = case when r.status = 'offered' then 'accepted' else r.status end, accepted_at = coalesce(r.accepted_at, now()),
         lease_holder = l.holder, fencing_token = l.fencing_token
    from l where r.id = l.resource and r.workstation_id = $2 and r.status in (${statusesSql('claim')})
  returning r.*
)
select l.resource, u.*, l.fencing_token as granted, l.holder as l_holder, l.fencing_token as l_token, l.expires_at as l_expires_at,
       ${pendingCommandsSql('l.resource', 'select resource from l')} as pending_commands
from l left join u on u.id = l.resource`;

// Claim on offer: the scheduler's placement and the lease for the agent's runner in ONE
// statement (`$1`: JSON rows {id, ws, holder, ttl}), on runs its page transaction holds locked.
// Each claimed run comes back as ONE json column (`row_to_json`, read by `claimOnOffer`), not as
// its 40 columns: the offer needs nearly all of them, and the driver decoding each column of
// each row (its text, then its type's parser: a Date per timestamp, JSON per jsonb) cost more
// than the database printing the row as JSON and one `JSON.parse` of it — on PGlite 0.149 →
// 0.118 ms of the control plane's CPU per claimed run for the statement (in-process, passes of
// 25; issue 9, docs/benchmarks.md). The link relay reads the offers of other replicas the same
// way (`row_to_json` in the notification).
//
// `byTid`: each pick also carries its row's `ctid` (`tid`), as the scheduler's page locked it in
// the same transaction, and the statement reaches each run by it (a Tid Scan: the row's heap
// page) instead of two more descents of `runs_pkey` (the guard's probe and the UPDATE's):
// ~4 buffer hits fewer per claimed run of ~24 (issue 9, docs/benchmarks.md). A row the page
// locked cannot change before the COMMIT, so its ctid stays its newest version's, visible to
// this statement's snapshot (taken after the page's); a tid that does not name the run's row
// (the id is checked beside it) claims nothing, as a run no longer queued does. The id's check
// is written so no index can take it (`id || ''`): as `r.id = p.id` the UPDATE was planned as a
// probe of `runs_pkey` with the ctid as a filter (test claim-on-offer-tid).
const claimOnOfferSql = (byTid: boolean) => {
  const row = (a: string) => (byTid ? `${a}.ctid = p.tid and ${a}.id || '' = p.id` : `${a}.id = p.id`);
  return `
with p as (select * from jsonb_to_recordset($1::jsonb) as p(id text, ws text, holder text, ttl float8${byTid ? ', tid tid' : ''})), l as (
  ${leaseSql.claim({
    resource: 'p.id',
    holder: 'p.holder',
    ttlMs: 'p.ttl',
    from: 'p',
    orderBy: 'p.id',
    // A scalar subquery per pick (one primary-key probe each), not `exists (…)`: the planner made
    // that a semi-join against every run in those statuses — the whole queue, 9,950 rows read at
    // 10,000 queued, 1.7–3.5 ms of every claim-on-offer pass (issue 9).
    when: `(select q.status from runs q where ${row('q')}) in (${statusesSql('claimOnOffer')})`,
  })}
), u as (
  update runs r set status = 'accepted', workstation_id = p.ws, offered_at = now(), accepted_at = now(),
         lease_holder = l.holder, fencing_token = l.fencing_token
    from p join l on l.resource = p.id
   where ${row('r')} and r.status in (${statusesSql('claimOnOffer')})
  returning r.id, row_to_json(r) as run, l.holder as l_holder, l.fencing_token as l_token, l.expires_at as l_expires_at
)
select u.run, u.l_holder, u.l_token, u.l_expires_at, ${pendingCommandsSql('u.id', 'select id from u')} as pending_commands from u`;
};
const CLAIM_ON_OFFER_SQL = claimOnOfferSql(false);
const CLAIM_ON_OFFER_BY_TID_SQL = claimOnOfferSql(true);

// Hand-back of a run claimed on offer: fenced by its token (a held, live lease), only while it
// never started; the run goes back to the queue (no attempt used) and the lease is given up,
// in one statement. `o` is the row as it was, for the holder to release. `unsent`: the
// scheduler's, for a claim whose `offer-claimed` found no open link — also only while no
// re-registration re-sent it (`claimedOffers` moves `offered_at` strictly past the claim's
// `accepted_at`; claim on offer sets both to the same `now()`, a submit's own claim
// (`claimFresh`) accepts after its placement offered): the run's row lock orders the two, and
// an UPDATE re-checks its conditions on a row changed meanwhile.
const handBackGuard = (unsent: boolean) => `r.id = $1 and r.workstation_id = $2 and r.fencing_token = $3
     and ${leaseSql.heldWithToken({ resource: '$1', token: '$3' })}
     and r.status in (${statusesSql('handBack')}) and r.started_at is null${unsent ? ' and r.offered_at <= r.accepted_at' : ''}`;
// A run whose cancel was asked while it was `accepted` (which only set `cancel_requested`) is not
// re-queued: `c` names it, and `handBackRun` ends it `cancelled` as a lost runner's would be.
const handBackSql = (unsent: boolean) => `
with u as (
  update runs r set status = 'queued', workstation_id = null, offered_at = null, accepted_at = null,
         lease_holder = null, fencing_token = null
    from runs o
   where o.id = r.id and ${handBackGuard(unsent)} and not r.cancel_requested
  returning r.id, o.lease_holder
), l as (${leaseSql.release({ resource: 'u.id', holder: 'u.lease_holder', token: '$3', from: 'u' })}),
c as (select r.id from runs r where ${handBackGuard(unsent)} and r.cancel_requested)
select id, false as cancel from u union all select id, true as cancel from c`;
const HAND_BACK_SQL = handBackSql(false);
const HAND_BACK_UNSENT_SQL = handBackSql(true);
const HAND_BACK_GUARD_SQL = `select 1 from runs r where ${handBackGuard(false)}`;
const HAND_BACK_UNSENT_GUARD_SQL = `select 1 from runs r where ${handBackGuard(true)}`;

// Holder writes go to the database in batches (`write-batcher.ts`): every fenced statement
// below takes its items as one JSON array `$1`, read as the rows of `i` (`k` is the item's
// index, echoed back so each caller gets its own answer). An item whose guard does not pass
// returns no row; the lifecycle then finds out why on its checked path.
const ITEM_COLUMNS = 'k int, run_id text, ws text, token bigint, first bigint, next bigint, events jsonb';
// The items as the CTE `i` (`extra`: the statement's own columns after ITEM_COLUMNS). The
// planner sizes `jsonb_to_recordset` at 100 rows whatever the batch holds; with a batch that
// big, a plan made while `runs` was small (a prepared statement's generic plan, kept by its
// connection) joined the items to a Seq Scan of `runs` rather than a probe of its primary key
// per item (test young-plans). `k` is each item's index, so a range on it is always true: the
// planner, which has no statistics for it, sizes the batch at one row (a range of unknown
// selectivity: 0.5 %), and a batch's join is planned as key lookups at any table size.
const itemsCte = (extra = '') => `i as (
  select * from jsonb_to_recordset($1::jsonb) as i(${ITEM_COLUMNS}${extra})
   where i.k between 0 and 2147483647)`;

// The fenced guard of every holder write: the run carries the presented token, is in a status
// the write may leave, and the lease with that token is held and live by the database clock
// (and is this workstation's: `ITEM_ROW`). It is checked where the run is locked
// (`itemsLocked`), once per item: a claim of an expired lease must update the same run row, so
// once the row is locked nothing can slip in between (a row changed since the statement's
// snapshot is checked again on its newest version before it is locked, as an UPDATE's would be). The lease is looked up by the run row's
// id and token (equal to the item's): on the item's columns the lookup was a filter of the
// items' scan, which a join rescanned for every locked run — 25 × 25 probes of `leases` for a
// batch of 25, on both stores (test runs-indexes; issue 9, docs/benchmarks.md).
// The workstation is the UPDATE's to check (`ITEM_ROW`): in the probe it would make the
// workstation's index of held runs (every run it holds, each read from the heap) an equal choice
// to the primary key for a planner without statistics.
const fencedGuard = (statuses: string) => `r.id = k.run_id and r.fencing_token = k.token
            and r.status in (${statuses}) and ${leaseSql.heldWithToken({ resource: 'r.id', token: 'r.fencing_token' })}`;
// The UPDATE's own condition: its row is the one its item locked (`o`, read as `i` by the
// UPDATE: the items with their locked run), and is the item's workstation's.
const ITEM_ROW = 'r.id = i.locked and r.workstation_id = i.ws and r.fencing_token = i.token';

// Holder events (`first` seq, `next` = last seq + 1; both 0 without events). The fast
// statements take a batch only when it continues exactly at the run's stored next seq
// (`EVENTS_CONTINUE`, judged on the locked row): every seq from there up is unused (each
// writer of events bumps `next_event_seq` past them in the same statement or transaction), so
// the events go in with a plain insert. A resend (a seq below the stored next) or a gap returns
// no row, and the checked path drops the resent ones (`EventStore.append`) or answers
// `event-seq-gap`. No `on conflict`: a speculative insert probed the primary key once more and
// wrote a confirm record per event (issue 9, docs/runs.md _Events_).
const EVENTS_CONTINUE = '(i.next = 0 or r.next_event_seq = i.first)';
const ITEM_EVENTS = `select u.id, e.seq, e.type, e.payload, coalesce(e.at, now())
    from u join i on i.k = u.k cross join lateral jsonb_to_recordset(i.events) as e(seq bigint, type text, payload jsonb, at timestamptz)`;

// The runs of a batch's items that pass the fenced guard, locked in id order first (see
// runsLockedById): each by its own probe of the primary key, a scalar subquery per item in the
// items' run-id order (as `leaseSql.lockedByKeys` does for leases): `locked`, null for an item
// whose guard fails (a stale token locks no run). The UPDATE joins them by primary key. Found
// as one array (`r.id = any (array(…))`), the step was planned as a Seq Scan of `runs` on a
// connection whose generic plan was made while `runs` was small, and kept: 1,147–1,612 buffer
// hits for a finish of 25 after ~22,000 runs, 12–55 ms a batch under load (test young-plans;
// issue 9, docs/benchmarks.md). A probe per item is an index scan whatever the statistics say.
const itemsLocked = (statuses: string) => `o as materialized (
  select k.*, (select r.id from runs r where ${fencedGuard(statuses)} for no key update of r) as locked
    from (select * from i order by i.run_id) k)`;
// The UPDATE reads the items from `o` (each with its locked run), one row per item joined to
// `runs` by primary key: joined to `i` again, the two CTEs (one row each to the planner, see
// itemsCte) were a nested loop rescanning one for every row of the other, 25 × 25 rows per
// batch of 25 — ~0.25 ms of a 1.6 ms finish (auto_explain, issue 9, docs/benchmarks.md).
const FROM_ITEMS = 'o as i';

const REPORT_EVENTS_SQL = `
with ${itemsCte()}, ${itemsLocked(ACTIVE)}, u as (
  update runs r set next_event_seq = greatest(r.next_event_seq, i.next)
    from ${FROM_ITEMS} where ${ITEM_ROW} and ${EVENTS_CONTINUE}
  returning i.k, r.id, r.next_event_seq
), e as (insert into run_events (run_id, seq, type, payload, at) ${ITEM_EVENTS})
select k, next_event_seq from u`;

const START_WITH = `
with ${itemsCte()}, ${itemsLocked(statusesSql('start'))}, u as (
  update runs r set status = 'running', started_at = now(), next_event_seq = greatest(r.next_event_seq, i.next)
    from ${FROM_ITEMS} where ${ITEM_ROW} and ${EVENTS_CONTINUE}
  returning i.k, r.*
), e as (insert into run_events (run_id, seq, type, payload, at) ${ITEM_EVENTS})`;
const START_SQL = `${START_WITH}
select u.*, l.holder as l_holder, l.fencing_token as l_token, l.expires_at as l_expires_at
  from u left join leases l on l.resource = u.id and l.holder is not null`;
// Every item answered briefly (`answer: 'brief'`): the status and the next seq, no run row to
// send, parse and map.
const START_BRIEF_SQL = `${START_WITH}
select u.k, u.status, u.next_event_seq from u`;

// When a run started, given how long ago its runner says it did (`started_ms_ago`; null: it
// did not say): a run with no start yet gets now() minus that, never before its acceptance.
const startedAtSql = (r: string, agoMs: string) =>
  `case when ${r}.started_at is null and ${agoMs} is not null
        then greatest(${r}.accepted_at, now() - ${agoMs} * interval '1 millisecond') else ${r}.started_at end`;

// Terminal: the events, then `terminal_status` at the next seq, open commands cancelled and the
// lease given up, all in the one statement (so in one transaction).
const FINISH_WITH = `
with ${itemsCte(', status text, exit_code int, failure_kind text, message text, terminal jsonb, started_ago float8')},
${itemsLocked(statusesSql('finish'))}, u as (
  update runs r set status = i.status, exit_code = i.exit_code, failure_kind = i.failure_kind, failure_message = i.message,
         started_at = ${startedAtSql('r', 'i.started_ago')},
         finished_at = now(), next_event_seq = greatest(r.next_event_seq, i.next) + 1
    from ${FROM_ITEMS} where ${ITEM_ROW} and ${EVENTS_CONTINUE}
     and (i.status <> 'failed' or r.retry is null)
  returning i.k, r.*
), e as (
  insert into run_events (run_id, seq, type, payload, at)
  ${ITEM_EVENTS}
  union all
  select u.id, u.next_event_seq - 1, 'terminal_status', i.terminal, now() from u join i on i.k = u.k
), c as (
  update run_commands set state = 'cancelled', finished_at = now() where run_id in (select id from u) and state in ('pending', 'acked')
), ol as ${leaseSql.lockedByKeys({ keys: 'select u.id from u' })},
l as (${leaseSql.release({ resource: 'u.id', holder: 'u.lease_holder', token: 'u.fencing_token', from: 'u join ol on ol.resource = u.id' })})`;
const FINISH_SQL = `${FINISH_WITH}
select u.*, null as l_holder, null as l_token, null as l_expires_at from u`;
const FINISH_BRIEF_SQL = `${FINISH_WITH}
select u.k, u.status, u.next_event_seq from u`;

// A renewal: the run is this workstation's, active, and carries the token; the lease rules are
// `@runt/leases`' own. The answer carries `cancel_requested` for agents without a link.
// It locks (by resource) only the held leases with an item's token — those it may renew: a
// late renewal of a run handed back and queued again (its lease released) must not lock that
// lease, which a scheduling pass may be about to claim in its page's order (40P01).
const RENEWED_LEASES = leaseSql.lockedByKeys({
  keys: 'select distinct i.run_id, i.token from i',
  where: 'l.fencing_token = k.token and l.holder is not null',
});
const RENEW_SQL = `
with i as (select * from jsonb_to_recordset($1::jsonb) as i(k int, run_id text, ws text, token bigint, ttl float8)),
ol as ${RENEWED_LEASES}, u as (
  ${leaseSql.renew({
    resource: 'i.run_id',
    holder: 'r.lease_holder',
    token: 'i.token',
    ttlMs: 'i.ttl',
    // the leases only (the runs are read, not locked), in resource order
    from: 'i join ol on ol.resource = i.run_id join runs r on r.id = i.run_id',
    when: `r.workstation_id = i.ws and r.fencing_token = i.token and r.status in (${ACTIVE})`,
  })}
)
select i.k, u.expires_at, r.cancel_requested from u join i on i.run_id = u.resource join runs r on r.id = u.resource`;

// The columns a submit writes from its items (`runItem`), and the items as rows (`$1`: a JSON
// array of them): one home for the insert below and a submit's own placement (the scheduler's
// `freshOffer`, which inserts its run already placed).
export const RUN_ITEM_COLUMNS = [
  'id',
  'runtime',
  'image',
  'command',
  'env',
  'secret_env',
  'workdir',
  'ready_when',
  'placement_workstation_id',
  'placement_labels',
  'cpus',
  'memory_bytes',
  'bundle_sha256',
  'max_attempts',
  'idempotency_key',
  'timeout_s',
  'queue_timeout_s',
  'retry',
].join(', ');
export const RUN_ITEMS_SQL = `jsonb_to_recordset($1::jsonb) as i(n int, id text, runtime text, image text, command jsonb, env jsonb, secret_env jsonb, workdir text,
         ready_when jsonb, placement_workstation_id text, placement_labels jsonb, cpus float8, memory_bytes bigint,
         bundle_sha256 text, max_attempts int, idempotency_key text, timeout_s int, queue_timeout_s int, retry jsonb)`;

// Runs are inserted from one JSON array (`n` keeps the queue in the order they were given), so
// a batch of 1,000 is one statement like a single run.
//
// Its `returning *` stays (decided 2026-12-02, lead): returning only what the items do not say
// (id, created_at, the jsonb objects) and making the rest of the answer from the items cut the
// statement's CPU on PGlite in-process (0.079 → 0.050 ms per run of 1,000) but cost the control
// plane 0.05–0.07 ms more per run in the Postgres burst-batch, 6 of 6 alternated pairs
// (docs/benchmarks.md, _PGlite's result rows_).
const ON_KEY_CONFLICT = '  on conflict (idempotency_key) where idempotency_key is not null do nothing\n';
const INSERT_RUNS_KEYED = `insert into runs (status, ${RUN_ITEM_COLUMNS})
  select 'queued', ${RUN_ITEM_COLUMNS.replace(/(\w+)/g, 'i.$1')}
    from ${RUN_ITEMS_SQL}
   order by i.n
${ON_KEY_CONFLICT}  returning *, null as l_holder, null as l_token, null as l_expires_at`;
// A batch without idempotency keys cannot meet the only arbiter (a partial index of keyed rows),
// so it is a plain insert: `on conflict` made every run a speculative insert (one more probe of
// that index and a confirm WAL record per run; issue 9, docs/runs.md _Hot paths_).
const INSERT_RUNS = INSERT_RUNS_KEYED.replace(ON_KEY_CONFLICT, '');

// On Postgres the insert commits without waiting for its WAL flush (visible at once, so the
// scheduling pass it asks for runs while the disk syncs: issue 10's offer latency), and
// submitMany answers only after `flushWal` made it durable. See submitMany.
const visibleFirst = (sql: string) =>
  sql.replace('   order by i.n', `   where ${ASYNC_COMMIT} is not null\n   order by i.n`);
const INSERT_RUNS_VISIBLE_FIRST = visibleFirst(INSERT_RUNS);
const INSERT_RUNS_KEYED_VISIBLE_FIRST = visibleFirst(INSERT_RUNS_KEYED);
const insertRunsSql = (postgres: boolean, keyed: boolean) =>
  keyed
    ? postgres
      ? INSERT_RUNS_KEYED_VISIBLE_FIRST
      : INSERT_RUNS_KEYED
    : postgres
      ? INSERT_RUNS_VISIBLE_FIRST
      : INSERT_RUNS;

// The flush's WAL record (FLUSH_SQL and, after a submit's placement, FLUSH_UNLESS_HELD_HERE_SQL:
// one home for both) and a transaction's synchronous commit (the flushes, the read-backs, claimFresh).
const FLUSH_MESSAGE = `pg_logical_emit_message(true, 'runt-flush', '')`;
const FLUSH_SQL = `select ${FLUSH_MESSAGE} where ${SYNC_COMMIT} is not null`;

/**
 * Waits until every commit this process saw before the call is on disk (Postgres): a
 * transaction with its own WAL record (a transactional logical message, no table written, any
 * role may send it) commits synchronously, and a synchronous commit flushes the WAL up to its
 * own commit record, so every earlier commit with it. PGlite: nothing to wait for (its writes
 * commit synchronously, and a synchronous commit returns once its WAL segment is `fdatasync`ed
 * on the host: `openPglite` in @runt/sql).
 *
 * A failure (a pooled connection lost) says nothing of the earlier commit. With `retry`
 * (default) the flush is tried once more on another connection — which may reach a server that
 * crashed and restarted since that commit, and "confirm" a commit the crash lost. So only a
 * caller that reads back what it acts on may retry blindly (a finish written again alone finds
 * the run as the database kept it); a caller that acts on what it wrote itself (a claim it
 * sends, a submit it answers) passes `retry: false` and reads its rows back instead, in a
 * synchronous commit ({@link confirmClaims}, {@link confirmRuns}): what is there to read is
 * durable, what a crash lost is not there.
 *
 * @example
 * await flushWal(db); // the asynchronously committed insert before it is durable now
 */
export async function flushWal(db: Database, { retry = true }: { retry?: boolean } = {}): Promise<void> {
  if (db.backend !== 'postgres') return;
  const first = db.query(FLUSH_SQL);
  await (retry ? first.catch(() => db.query(FLUSH_SQL)) : first);
}

// The head of a read-back (`confirmRuns`, `confirmClaims`): its transaction commits
// synchronously (`f`'s WAL record makes it write, so its commit waits for the WAL flush up to its
// own commit record); the query joins `f`.
const CONFIRMING = `with f as materialized (
  select pg_logical_emit_message(true, 'runt-confirm', '') as lsn
   where ${SYNC_COMMIT} is not null
)`;

// How many of the runs `$1` (ids) exist, read durably (`CONFIRMING`).
const CONFIRM_RUNS_SQL = `${CONFIRMING}
select count(*)::int as n from f, runs r where r.id = any($1::text[])`;

/**
 * Whether every run of `ids` (a submit's, committed asynchronously, whose {@link flushWal}
 * failed) is durable: read back in a synchronous commit, sound on any connection (see
 * {@link confirmClaims}). Postgres only.
 *
 * @example
 * if (!(await confirmRuns(db, ['run_1']))) throw e; // not known durable: not answered
 */
export async function confirmRuns(db: Database, ids: string[]): Promise<boolean> {
  const unique = [...new Set(ids)];
  const r = await db.query<{ n: number }>(CONFIRM_RUNS_SQL, [unique]);
  return Number(r.rows[0]?.n ?? 0) === unique.length;
}

// The run `$1` as it is now, read durably (`CONFIRMING`): a submit whose placement's answer was lost.
const READ_PLACED_BACK_SQL = `${CONFIRMING}
${SELECT_RUN}, f where r.id = $1`;

/**
 * The run of a submit whose placement's message lost its connection before the answer: undefined
 * when the placement did not commit (or was lost with a crash); otherwise the run as it is now,
 * durable (read in a synchronous commit, see {@link confirmRuns}). Postgres only.
 */
async function readPlacedBack(db: Database, id: string): Promise<RunRow | undefined> {
  return (await db.query<RunRow>(READ_PLACED_BACK_SQL, [id])).rows[0];
}

/**
 * Tracing only (`RUNT_TRACE_FILE`, the replicas bench's `BENCH_TRACE=1`): a statement that
 * records the server's clock (`clock_timestamp()`) as `step` of `key` where it stands in a
 * pipeline, so the trace splits the database's part of a submit (issue 10); nothing otherwise.
 */
function traceClock(step: string, key: string): Statement[] {
  if (!tracing) return [];
  return [
    {
      text: `select (extract(epoch from clock_timestamp()) * 1000)::float8 as t`,
      onArrival: (r) => traceAt(step, key, Number((r.rows[0] as { t: number }).t)),
    },
  ];
}

/**
 * The session setting in which a submit's placement (the scheduler's `freshOffer`) notes
 * whether it offered the run to a link held by this replica (`'true'`) or not (`'false'`).
 */
export const FRESH_HELD_HERE = 'runt.fresh_held_here';

/**
 * {@link flushWal}'s statement, run after a submit's placement in the same pipeline (its own
 * transaction, after the placement's `COMMIT`), unless the placement noted the run held here
 * ({@link FRESH_HELD_HERE}: that run is delivered first, and a claim on offer flushes the WAL
 * itself). `flushed`: whether it flushed (a CASE, so the message is written only then).
 */
const FLUSH_UNLESS_HELD_HERE_SQL = `select case when current_setting('${FRESH_HELD_HERE}', true) is distinct from 'true'
  then ${FLUSH_MESSAGE} is not null and ${SYNC_COMMIT} is not null
  else false end as flushed`;

// The claims of `$1` (run ids) with `$2` (their fencing tokens) that still hold: accepted under
// that token. One statement, read durably (`CONFIRMING`).
const CONFIRM_CLAIMS_SQL = `${CONFIRMING}
select c.id from f, unnest($1::text[], $2::bigint[]) as c(id, token)
  join runs r on r.id = c.id and r.fencing_token = c.token and r.status = 'accepted'`;

/**
 * The runs of `grants` (claims on offer a pass committed asynchronously, whose {@link flushWal}
 * failed) whose claim is durable and still theirs: still `accepted` under the grant's fencing
 * token, read by a transaction that commits synchronously. Sound on any connection, even after
 * the server crashed and restarted since the claim's COMMIT: a claim the crash lost is not
 * there to read (its run is queued again, or claimed anew with another token), and one that is
 * visible has its commit record in the WAL before this transaction's, which is flushed before
 * the answer comes back. Postgres only (PGlite commits synchronously).
 *
 * @example
 * const kept = await confirmClaims(db, page.claimed); // ids of the claims safe to send
 */
export async function confirmClaims(db: Database, grants: ClaimGrant[]): Promise<Set<string>> {
  const r = await db.query<{ id: string }>(CONFIRM_CLAIMS_SQL, [
    grants.map((g) => g.run.id),
    grants.map((g) => g.fencingToken),
  ]);
  return new Set(r.rows.map((row) => row.id));
}

/** Seals a run's secret env entries (`SecretBox.seal`); absent when the control plane has no key. */
export type SealSecrets = (runId: string, secrets: Record<string, string>) => SealedEnv;

const runItem = (n: number, id: string, input: SubmitRunInput, seal: SealSecrets | undefined) => {
  const { env, secrets } = splitSecretEnv(input.env);
  const hasSecrets = Object.keys(secrets).length > 0;
  if (hasSecrets && !seal) throw new Error('secret env entries need a secret key (checked before submit)');
  return runItemOf(n, id, input, env, hasSecrets ? seal!(id, secrets) : null);
};

const runItemOf = (
  n: number,
  id: string,
  input: SubmitRunInput,
  env: Record<string, string>,
  secretEnv: SealedEnv | null,
) => ({
  n,
  id,
  runtime: input.runtime,
  image: input.image ?? null,
  command: input.command,
  env,
  secret_env: secretEnv,
  workdir: input.workdir ?? null,
  ready_when: input.ready_when ?? null,
  placement_workstation_id: input.placement.workstation_id ?? null,
  placement_labels: input.placement.labels ?? {},
  cpus: input.resources.cpus ?? null,
  memory_bytes: input.resources.memory_bytes ?? null,
  bundle_sha256: input.bundle?.sha256 ?? null,
  // a retry policy's max_attempts is the run's one budget of attempts
  max_attempts: input.retry?.max_attempts ?? input.max_attempts,
  idempotency_key: input.idempotency_key ?? null,
  timeout_s: input.timeout_s ?? null,
  queue_timeout_s: input.queue_timeout_s ?? null,
  retry: input.retry ?? null,
});

/** One fenced write of a holder: the run, who writes, the token it presents, and its events (already JSON). */
export interface FencedWrite {
  runId: string;
  workstationId: string;
  token: number;
  batch?: EventBatch | undefined;
  /** The caller needs only the status and the next seq (`answer: 'brief'`), not the run. */
  brief?: boolean | undefined;
}

/**
 * A holder report's answer: the run's status after it and the next seq, and the whole run
 * unless every item of its statement asked for the brief answer.
 */
export interface ReportAnswer {
  status: RunStatus;
  nextEventSeq: number;
  run?: Run;
}

/** The answer of a start or finish row: brief rows carry only `k`, `status`, `next_event_seq`. */
function reportAnswer(row: RunRow & { k: number }, brief: boolean): ReportAnswer {
  const nextEventSeq = Number(row.next_event_seq);
  if (brief) return { status: row.status, nextEventSeq };
  const run = toRun(row);
  return { status: run.status, nextEventSeq, run };
}

/**
 * One item of `$1`, built as text so the holder's events (already JSON in `batch.json`) are
 * spliced in as they are, never parsed or serialised again.
 */
function itemJson(k: number, w: FencedWrite, extra = ''): string {
  const b = w.batch;
  return `{"k":${k},"run_id":${JSON.stringify(w.runId)},"ws":${JSON.stringify(w.workstationId)},"token":${Number(w.token)},"first":${b ? b.first : 0},"next":${b ? b.last + 1 : 0},"events":${b ? b.json : '[]'}${extra}}`;
}

/** The rows of a batched statement, answered per item (`undefined` where the guard did not pass). */
function byItem<R extends { k: number }, O>(n: number, rows: R[], map: (row: R) => O): Array<O | undefined> {
  const out = new Array<O | undefined>(n).fill(undefined);
  for (const row of rows) out[Number(row.k)] = map(row);
  return out;
}

/** The payload of a `terminal_status` event. */
export function terminalPayload(f: TerminalOutcome): Record<string, unknown> {
  return {
    status: f.status,
    ...(f.exitCode === undefined ? {} : { exit_code: f.exitCode }),
    ...(f.failureKind ? { failure_kind: f.failureKind } : {}),
    ...(f.message ? { message: f.message } : {}),
  };
}

/**
 * `JSON.stringify(terminalPayload(f))`, written directly: a finish's item text carries it for
 * every run, and the payload object with its three conditional spreads was made and copied per
 * run only to be stringified (issue 9, docs/benchmarks.md).
 *
 * @example
 * terminalJson({ status: 'completed', exitCode: 0 }); // '{"status":"completed","exit_code":0}'
 */
export function terminalJson(f: TerminalOutcome): string {
  let s = `{"status":${JSON.stringify(f.status)}`;
  if (f.exitCode !== undefined) s += `,"exit_code":${JSON.stringify(f.exitCode)}`;
  if (f.failureKind) s += `,"failure_kind":${JSON.stringify(f.failureKind)}`;
  if (f.message) s += `,"message":${JSON.stringify(f.message)}`;
  return `${s}}`;
}

/**
 * submit (`→ queued`): inserts runs, any number, in ONE insert statement, in the order given.
 * A run whose `idempotency_key` was seen within 24 h (or earlier in the same list) is not
 * inserted: its answer is the existing run (`created: false`). With keys, one transaction
 * (expired keys freed, the insert, the existing runs read); without, one statement.
 *
 * Resolves only once the runs are durable. On Postgres the insert commits asynchronously and
 * `visible` is called with the answers as soon as it committed (other connections see the runs
 * now: a scheduling pass started from it can already offer them), then {@link flushWal} waits
 * for the disk; on PGlite the insert commits synchronously and `visible` is called just before
 * resolving. An offer sent before the flush is safe as every plain offer is (see the
 * scheduler's ASYNC_COMMIT): the agent's claim commits synchronously, which flushes the insert
 * first, and a database that lost the run in a crash refuses the claim — and never answered
 * the submit.
 *
 * @example
 * const out = await submitMany(db, [submitRunRequestSchema.parse({ runtime: 'fake', command: ['true'] })]);
 */
export async function submitMany(
  db: Database,
  inputs: SubmitRunInput[],
  seal?: SealSecrets,
  visible?: (out: Array<{ run: Run; created: boolean }>) => void,
  placeFresh?: (items: string) => Statement[],
  deliverHere?: DeliverHere,
): Promise<Array<{ run: Run; created: boolean }>> {
  if (inputs.length === 0) return [];
  const lone = inputs.length === 1 ? inputs[0]! : undefined;
  if (placeFresh && db.pipeline && lone && lone.idempotency_key === undefined) {
    const id = newRunId();
    const item = runItem(0, id, lone, seal);
    // Secret entries never travel in a notification (the row would carry them sealed).
    if (item.secret_env === null) return submitPlaced(db, id, item, placeFresh, visible, deliverHere);
  }
  // The first item with a key is inserted; a later one with the same key gets its run.
  const firstWithKey = new Map<string, number>();
  const ids: Array<string | undefined> = [];
  const items: Array<ReturnType<typeof runItem>> = [];
  inputs.forEach((input, n) => {
    const key = input.idempotency_key;
    if (key !== undefined) {
      if (firstWithKey.has(key)) {
        ids.push(undefined);
        return;
      }
      firstWithKey.set(key, n);
    }
    const id = newRunId();
    ids.push(id);
    items.push(runItem(n, id, input, seal));
  });
  const json = JSON.stringify(items);
  const keys = [...firstWithKey.keys()];
  const insertSql = insertRunsSql(db.backend === 'postgres', keys.length > 0);
  const traced = tracing ? (ids.filter(Boolean) as string[]) : [];
  if (tracing) traceMark('insert.sent', traced);
  const { inserted, existing } =
    keys.length === 0
      ? { inserted: (await db.query<RunRow>(insertSql, [json])).rows, existing: [] as RunRow[] }
      : await db.transaction(async (tx) => {
          await tx.query(
            `update runs set idempotency_key = null where idempotency_key = any($1::text[]) and created_at < now() - interval '24 hours'`,
            [keys],
          );
          const rows = (await tx.query<RunRow>(insertSql, [json])).rows;
          const got = new Set(rows.map((r) => r.idempotency_key));
          const missing = keys.filter((k) => !got.has(k));
          const found =
            missing.length === 0
              ? []
              : (await tx.query<RunRow>(`${SELECT_RUN} where r.idempotency_key = any($1::text[])`, [missing]))
                  .rows;
          return { inserted: rows, existing: found };
        });
  const byId = new Map(inserted.map((r) => [r.id, toRun(r)]));
  const byKey = new Map<string, { run: Run; created: boolean }>();
  for (const r of existing) byKey.set(r.idempotency_key!, { run: toRun(r), created: false });
  for (const r of inserted)
    if (r.idempotency_key) byKey.set(r.idempotency_key, { run: byId.get(r.id)!, created: true });
  const out = inputs.map((input, n) => {
    const id = ids[n];
    const mine = id === undefined ? undefined : byId.get(id);
    if (mine) return { run: mine, created: true };
    const other = byKey.get(input.idempotency_key!)!;
    return { run: other.run, created: false };
  });
  if (tracing) traceMark('insert.returned', traced);
  return answered(db, traced, out, visible);
}

/**
 * A submit's tail, once its insert committed (asynchronously on Postgres): the answers made
 * visible (`visible`: a pass may place them now), then durable ({@link flushWal}, unless
 * `flushed` says it is already: submitPlaced's own flush or claim) before they are returned.
 */
async function answered(
  db: Database,
  traced: string | string[],
  out: Array<{ run: Run; created: boolean }>,
  visible?: (out: Array<{ run: Run; created: boolean }>) => void,
  flushed: boolean | Promise<boolean> = false,
): Promise<Array<{ run: Run; created: boolean }>> {
  visible?.(out);
  if (!(await flushed))
    await flushSubmitted(
      db,
      out.map((o) => o.run.id),
    );
  if (tracing) traceMark('flush.returned', traced);
  return out;
}

/**
 * A submit's runs durable before its answer, which is made from what its insert returned: a
 * failed {@link flushWal} is not retried blindly but read back ({@link confirmRuns}); runs not
 * all there are not answered (the client retries).
 */
async function flushSubmitted(db: Database, ids: string[]): Promise<void> {
  await flushWal(db, { retry: false }).catch(async (e: unknown) => {
    if (!(await readBack(() => confirmRuns(db, ids)))) throw e;
  });
}

/**
 * How long a submit's read-back asks again at once, from its first try: tries on dead
 * pooled connections fail in 0-30 ms each and a new connection answers in ~150 ms (measured,
 * load 11-15: docs/reliability.md, "A flush after a restart"), so this bounds only a run of
 * lost connections that does not end; then the submit is answered 503.
 */
const READ_BACK_MS = 2_000;

/**
 * `ask` (a read-back, sound on any connection, unlike a flush) asked again at once while it
 * fails on a connection that died open ({@link isConnectionLost}: a restart leaves the pool
 * several it hands out before it has dropped them all, 1 to 4 in a row measured, each failing
 * at once), up to {@link POOL_MAX} + 1 tries (then a new connection was opened) and
 * {@link READ_BACK_MS}: a submit whose run is durable would otherwise go unanswered — retried
 * by its client, a second run. Not again on a connection that could not be opened (refused,
 * a silent host's connect timeout): that would only wait as long again before the 503.
 */
export async function readBack<T>(ask: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + READ_BACK_MS;
  for (let n = 1; ; n++) {
    try {
      return await ask();
    } catch (e) {
      if (n > POOL_MAX || Date.now() >= deadline || !isConnectionLost(e)) throw e;
    }
  }
}

/**
 * Delivers a run its submit's placement offered to a workstation whose link this replica holds
 * (`freshOffer`'s `held_here`: no notification was published for it), before the submit is
 * answered: a plain offer sent at once, or — the agent asked for claim on offer — the run
 * claimed for its runner (`offered → accepted`, a synchronous commit) and sent already leased.
 * Resolves to the claimed run when it made a synchronous commit that wrote the claim (the WAL
 * is then flushed past the submit's insert: no {@link flushWal} needed), else undefined.
 */
export type DeliverHere = (run: Run) => Promise<Run | undefined>;

/**
 * One run without an idempotency key or secrets, on Postgres: its insert already placed
 * (`placeFresh`, the scheduler's `freshOffer`: the scheduler's lock, then one statement that
 * places the run from its item and inserts it `offered` there, or `queued`) and the `COMMIT`,
 * then the WAL flush, in ONE pipeline — one round trip instead of the insert's, a pass's three
 * and a flush's, every statement planned once per connection. The transaction commits
 * asynchronously like the insert alone: its offer's notification goes out at the `COMMIT`, and
 * the replica holding the link sends the offer while this process's server runs the flush. The
 * server answers the whole message once, after the flush (no protocol Flush after the
 * `COMMIT`, since 2026-12-02): the row sent ahead of the flush woke this process in the
 * ~1 ms between the `COMMIT` and the other replica's offer, the moment the other replica's
 * LISTEN process and event loop need the machine's cores, and it had nothing to do with it
 * before the flush but wait (issue 10; docs/benchmarks.md). A run offered onto a link this
 * replica holds is delivered by `deliverHere` (the same-replica path: no pass, no
 * notification); for it the pipeline's flush is skipped (the placement noted it held here), so
 * its answer comes as early as before, and when `deliverHere` claimed the run on offer, the
 * claim's synchronous commit made the insert durable: no flush follows; otherwise
 * {@link flushWal}. `visible` gets the run offered or still queued. Any other run is answered
 * once the pipeline's flush returned (on the placement's own connection: it survived since the
 * COMMIT, so no crash lost it) or, if that flush failed, once flushSubmitted's flush returned
 * or its read-back found the run. A connection lost before the answer came (at the `COMMIT`,
 * or during the flush) leaves the placement's fate unknown until its server process is gone
 * (`@runt/sql` ends it before the pipeline rejects: a cut socket does not stop it running the
 * COMMIT still in its input buffer): the run is then read back durably by its id
 * ({@link readPlacedBack}) and answered as it is, or the loss is the answer.
 */
async function submitPlaced(
  db: Database,
  id: string,
  item: ReturnType<typeof runItem>,
  placeFresh: (items: string) => Statement[],
  visible?: (out: Array<{ run: Run; created: boolean }>) => void,
  deliverHere?: DeliverHere,
): Promise<Array<{ run: Run; created: boolean }>> {
  if (tracing) traceMark('insert.sent', id);
  const place = placeFresh(JSON.stringify([item]));
  let row: (RunRow & { held_here?: boolean | null }) | undefined;
  let committed: (placed: typeof row) => void = () => {};
  const commit = new Promise<typeof row>((resolve) => (committed = resolve));
  const clock = (step: string) => traceClock(step, id);
  const pipeline = db.pipeline!<{ flushed: boolean }>([
    { text: 'BEGIN' },
    ...clock('pg.begun'),
    ...place.slice(0, -1),
    ...clock('pg.locked'),
    { ...place[place.length - 1]!, onArrival: (r) => void (row = r.rows[0] as typeof row) },
    ...clock('pg.placed'),
    { text: 'COMMIT', onArrival: () => committed(row) },
    ...clock('pg.committed'),
    { text: FLUSH_UNLESS_HELD_HERE_SQL },
  ]);
  // The row once the placement committed; a pipeline that fails before its COMMIT's answer
  // arrived rejects here — when its connection was lost, the run is read back instead.
  let readBackRow: RunRow | undefined;
  const placed: typeof row = await Promise.race([commit, pipeline.then(() => commit)]).catch(
    async (e: unknown) => {
      if (!isConnectionLost(e)) throw e;
      readBackRow = await readBack(() => readPlacedBack(db, id));
      if (!readBackRow) throw e;
      return readBackRow;
    },
  );
  const run = toRun(placed!);
  // The flush in the pipeline did it (true), or did not run (false); a failure after the COMMIT
  // says nothing of the insert, which committed: flushWal then (as after a lone insert). A run
  // read back was read durably.
  const flushedHere =
    readBackRow !== undefined ||
    pipeline.then(
      (r) => r.rows[0]?.flushed === true,
      () => false,
    );
  if (tracing) traceMark('insert.returned', id);
  // A run read back is not delivered here: a link held here gets it from the resync of its
  // offers (every scheduler tick), or the offer times out and the run is placed again.
  if (placed!.held_here && run.status === 'offered' && deliverHere) {
    const claimed = await deliverHere(run);
    if (claimed) {
      await flushedHere; // the connection's pipeline ends (it flushed nothing: held here)
      // The claim's synchronous commit made the insert durable.
      return answered(db, id, [{ run: claimed, created: true }], visible, true);
    }
  }
  return answered(db, id, [{ run, created: true }], visible, flushedHere);
}

/**
 * submit one run: {@link submitMany} with one item.
 *
 * @example
 * const { run } = await submit(db, submitRunRequestSchema.parse({ runtime: 'fake', command: ['true'] }));
 */
export async function submit(
  db: Database,
  input: SubmitRunInput,
  seal?: SealSecrets,
): Promise<{ run: Run; created: boolean }> {
  return (await submitMany(db, [input], seal))[0]!;
}

/**
 * offer (`queued → offered`): the scheduler's picks, inside its transaction (which holds the
 * queued rows). Returns the offered runs (an offered run holds no lease, so the rows are whole).
 *
 * @example
 * const runs = await offer(tx, [{ id: 'run_1', ws: 'ws_1' }]);
 */
export async function offer(q: Queryable, picks: Array<{ id: string; ws: string }>): Promise<Run[]> {
  if (picks.length === 0) return [];
  const r = await q.query<RunRow>(
    `update runs r set status = 'offered', workstation_id = p.ws, offered_at = now()
       from jsonb_to_recordset($1::jsonb) as p(id text, ws text) where r.id = p.id and r.status in (${statusesSql('offer')})
     returning r.*, null as l_holder, null as l_token, null as l_expires_at`,
    [JSON.stringify(picks)],
  );
  return r.rows.sort((a, b) => Number(a.position) - Number(b.position)).map(toRun);
}

/**
 * withdraw (`offered → queued`): the workstation declined the offer. No attempt is used up.
 *
 * @example
 * if (await withdraw(db, 'run_1', 'ws_1')) scheduler.kick();
 */
export async function withdraw(q: Queryable, runId: string, workstationId: string): Promise<boolean> {
  const r = await q.query(
    `update runs set status = 'queued', workstation_id = null, offered_at = null where id = $1 and workstation_id = $2 and status in (${statusesSql('withdraw')})`,
    [runId, workstationId],
  );
  runPathMetrics.requeues.inc({ reason: 'declined' }, r.rowCount);
  return r.rowCount > 0;
}

/**
 * withdraw, for a whole workstation (it is draining): every run offered to it goes back to
 * the queue, inside the caller's transaction. Returns how many.
 *
 * @example
 * const n = await withdrawAllFrom(tx, 'ws_1');
 */
export async function withdrawAllFrom(q: Queryable, workstationId: string): Promise<number> {
  const r = await q.query(
    `with o as ${runsLockedById(`r.workstation_id = $1 and r.status in (${statusesSql('withdraw')})`)}
     update runs r set status = 'queued', workstation_id = null, offered_at = null
       from o where r.id = o.id and r.status in (${statusesSql('withdraw')})`,
    [workstationId],
  );
  runPathMetrics.requeues.inc({ reason: 'drain' }, r.rowCount);
  return r.rowCount;
}

/**
 * The runs each step of a sweep takes, as conditions on `runs` (unqualified columns; `now()` is
 * the statement's or transaction's start): kept here once, for the steps' own statements and for
 * the sweep's probe (`sweepProbe` in sweeper.ts), which asks in one statement whether any step
 * has a row to take before running it. `timeoutMs`, `graceS`: SQL expressions (placeholders).
 */
export const STALE_OFFER_WHERE = (timeoutMs: string) =>
  `status in (${statusesSql('withdraw')}) and offered_at < now() - ${timeoutMs}::float8 * interval '1 millisecond'`;
/** @see STALE_OFFER_WHERE — the queued runs past their `queue_timeout_s` (`expireQueued`). */
export const QUEUE_EXPIRED_WHERE = `status in (${statusesSql('expireQueued')}) and queue_timeout_s is not null
          and coalesce(not_before, created_at) + make_interval(secs => queue_timeout_s) < now()`;
/** @see STALE_OFFER_WHERE — the active runs past `timeout_s` + `graceS` (`timeOutOverdue`). */
export const OVERDUE_WHERE = (
  graceS: string,
) => `status in (${statusesSql('timeOut')}) and timeout_s is not null
          and coalesce(started_at, accepted_at) + make_interval(secs => timeout_s + ${graceS}) < now()`;

/**
 * withdraw, by time: offers nobody claimed within `timeoutMs` go back to the queue (no
 * attempt is used up). Returns the runs and the workstations they had been offered to.
 *
 * @example
 * const back = await withdrawStaleOffers(db, 30_000);
 */
export async function withdrawStaleOffers(
  q: Queryable,
  timeoutMs: number,
): Promise<Array<{ id: string; workstation_id: string | null }>> {
  const r = await q.query<{ id: string; workstation_id: string | null }>(
    `with stale as (
       select id, workstation_id from runs where ${STALE_OFFER_WHERE('$1')}
       order by offered_at limit 500 for update skip locked
     )
     update runs r set status = 'queued', workstation_id = null, offered_at = null from stale
     where r.id = stale.id returning stale.id, stale.workstation_id`,
    [timeoutMs],
  );
  runPathMetrics.requeues.inc({ reason: 'offer-timeout' }, r.rows.length);
  return r.rows;
}

/**
 * claim (`offered → accepted`; a retry or a re-adoption keeps the status): takes the lease
 * and binds it to the run in one statement. `undefined` when it did not apply (lease held by
 * another, run not offered to this workstation, …); the caller then finds out why. When the
 * lease was granted but the run changed under it, the lease is given back first.
 *
 * @example
 * const grant = await claim(db, 'run_1', 'ws_1', 'ws_1/agent-1', 30_000);
 */
export async function claim(
  db: Queryable,
  runId: string,
  workstationId: string,
  holder: string,
  leaseMs: number,
): Promise<ClaimGrant | undefined> {
  return (await claimMany(db, [runId], workstationId, holder, leaseMs)).get(runId);
}

/**
 * claim, of many runs offered to one workstation, in ONE statement (the multi-row form of
 * {@link claim}, same guards): the grants by run id; a run missing from the map did not apply
 * (the caller finds out why, run by run). Leases granted on runs that changed under the claim
 * are given back.
 *
 * @example
 * const grants = await claimMany(db, ['run_1', 'run_2'], 'ws_1', 'ws_1/agent-1', 30_000);
 */
export async function claimMany(
  db: Queryable,
  runIds: string[],
  workstationId: string,
  holder: string,
  leaseMs: number,
): Promise<Map<string, ClaimGrant>> {
  const grants = new Map<string, ClaimGrant>();
  if (runIds.length === 0) return grants;
  const r = await db.query<
    RunRow & { resource: string; granted: number | string; pending_commands: boolean }
  >(CLAIM_SQL, [JSON.stringify([...new Set(runIds)]), workstationId, holder, leaseMs]);
  for (const row of r.rows) {
    if (row.id === null || row.id === undefined) {
      await releaseLease(db, row.resource, holder, Number(row.granted));
      continue;
    }
    grants.set(row.id, grantOf(row));
  }
  return grants;
}

/**
 * claim (`offered → accepted`) of a run its submit offered to a workstation whose link this
 * replica holds, for the runner that asked for claim on offer: {@link claimMany}'s statement
 * sent in one pipeline after `synchronous_commit = on` for its transaction, so its commit — a
 * lease granted and the run's row changed, both WAL records — waits for the WAL flush, which
 * takes every earlier commit with it (the submit's asynchronously committed insert and offer).
 * The grant, or undefined when it did not apply (the run changed: nothing was written, so the
 * caller still has to flush; a lease granted on a changed run is given back first).
 *
 * @example
 * const grant = await claimFresh(db, 'run_1', 'ws_1', 'ws_1/agent-1', 30_000);
 */
export async function claimFresh(
  db: Database,
  runId: string,
  workstationId: string,
  holder: string,
  leaseMs: number,
): Promise<ClaimGrant | undefined> {
  const r = await db.pipeline!<
    RunRow & { resource: string; granted: number | string; pending_commands: boolean }
  >([
    { text: `select ${SYNC_COMMIT}` },
    { text: CLAIM_SQL, params: [JSON.stringify([runId]), workstationId, holder, leaseMs] },
  ]);
  const row = r.rows[0];
  if (!row) return undefined;
  if (row.id === null || row.id === undefined) {
    await releaseLease(db, row.resource, holder, Number(row.granted));
    return undefined;
  }
  return grantOf(row);
}

/** What a claim-on-offer needs of a workstation's agent: its runner (the lease holder) and lease length. */
export interface OfferClaimer {
  holder: string;
  leaseMs: number;
}

/**
 * claim on offer (`queued → accepted`): the scheduler's picks for workstations whose agent takes
 * offers already claimed, placed and leased to that agent's runner in ONE statement, inside
 * the scheduler's transaction (which holds the queued rows). Returns the grants, oldest first.
 * `tid`: the run's row as that transaction locked it (its `ctid`, the page's `tid`), when every
 * pick has one: the statement reaches the runs by it (`claimOnOfferSql`).
 *
 * @example
 * const grants = await claimOnOffer(tx, [{ id: 'run_1', ws: 'ws_1', holder: 'ws_1/r1', leaseMs: 30_000 }]);
 */
export async function claimOnOffer(
  q: Queryable,
  picks: Array<{ id: string; ws: string; holder: string; leaseMs: number; tid?: string }>,
): Promise<ClaimGrant[]> {
  if (picks.length === 0) return [];
  const byTid = picks.every((p) => p.tid !== undefined);
  const r = await q.query<
    Pick<RunRow, 'l_holder' | 'l_token' | 'l_expires_at'> & { run: RunRow; pending_commands: boolean }
  >(byTid ? CLAIM_ON_OFFER_BY_TID_SQL : CLAIM_ON_OFFER_SQL, [
    // without a tid (undefined) the key is left out of the JSON: the by-id statement's items
    JSON.stringify(picks.map((p) => ({ id: p.id, ws: p.ws, holder: p.holder, ttl: p.leaseMs, tid: p.tid }))),
  ]);
  // The lease's columns and the commands' flag join the parsed run (ours, made by the parse) in
  // place: a copy of its 40 keys per run cost more than the rest of the answer (issue 9).
  const rows: Array<RunRow & { pending_commands: boolean }> = r.rows.map((row) =>
    Object.assign(row.run, {
      l_holder: row.l_holder,
      l_token: row.l_token,
      l_expires_at: row.l_expires_at,
      pending_commands: row.pending_commands,
    }),
  );
  return rows.sort((a, b) => Number(a.position) - Number(b.position)).map(grantOf);
}

/**
 * hand back (`accepted → queued`): the agent will not start a run claimed for it on offer
 * (draining, no room, runtime gone). Fenced by the token and only while the run never
 * started; no attempt is used, the lease is given up. A run whose cancel was asked meanwhile
 * ends `cancelled` instead (`accepted → cancelled`). Undefined when it did not apply.
 *
 * @example
 * if ((await handBack(db, 'run_1', 'ws_1', 3)) === 'queued') scheduler.kick();
 */
export async function handBack(
  db: Database,
  runId: string,
  workstationId: string,
  token: number,
): Promise<HandBackOutcome> {
  return handBackRun(db, false, [runId, workstationId, token]);
}

/**
 * What a hand-back did: the run went back to the queue (`queued`), or, its cancel asked while
 * it was accepted, ended (`cancelled`; its `terminal_status` event appended); undefined when it
 * did not apply.
 */
export type HandBackOutcome = 'queued' | 'cancelled' | undefined;

async function handBackRun(
  db: Database,
  unsent: boolean,
  args: [string, string | null, number],
): Promise<HandBackOutcome> {
  const r = await db.query<{ cancel: boolean }>(unsent ? HAND_BACK_UNSENT_SQL : HAND_BACK_SQL, args);
  const row = r.rows[0];
  if (!row) return undefined;
  if (!row.cancel) {
    runPathMetrics.requeues.inc({ reason: unsent ? 'unsent' : 'handed-back' });
    return 'queued';
  }
  // Cancel-requested: ended like a lost runner's attempt (loseRunner), under the run's lock, the
  // hand-back's guard checked again on the locked row.
  return db.transaction(async (tx) => {
    const s = await readRunState(tx, args[0], true);
    if (!s?.cancel_requested) return undefined;
    const still = await tx.query(unsent ? HAND_BACK_UNSENT_GUARD_SQL : HAND_BACK_GUARD_SQL, args);
    if (still.rows.length === 0) return undefined;
    await loseRunner(tx, s, 'released', 'handed back before it started');
    return 'cancelled';
  });
}

/**
 * The scheduler's hand-back of a run it claimed on offer whose `offer-claimed` found no open
 * link here (`accepted → queued`, the `handBack` move): never received, so back to the queue at
 * once with no attempt used, fenced by the grant's token, only while unstarted and not re-sent
 * by a re-registration since (see HAND_BACK_SQL); a cancel-requested run ends `cancelled`
 * instead. Counted as `unsent`.
 *
 * @example
 * if ((await handBackUnsent(db, grant)) === 'queued') scheduler.kick('freed');
 */
export async function handBackUnsent(db: Database, g: ClaimGrant): Promise<HandBackOutcome> {
  return handBackRun(db, true, [g.run.id, g.run.workstation_id, g.fencingToken]);
}

/**
 * The runs claimed on offer for each runner (`holder` at `ws`) that it has not started, with
 * their live leases, oldest first, in one statement (re-sent when that runner's link registers
 * again: the offer may have been lost). Each is marked re-sent (`offered_at` now, past `accepted_at`, an UPDATE
 * holding its row): the scheduler's {@link handBackUnsent} of a claim it could not send then no
 * longer applies, so a run re-sent to its agent is never also put back in the queue.
 *
 * @example
 * const again = await claimedOffers(db, [{ ws: 'ws_1', holder: 'ws_1/agent-1' }]);
 */
export async function claimedOffers(
  q: Queryable,
  links: Array<{ ws: string; holder: string }>,
): Promise<ClaimGrant[]> {
  if (links.length === 0) return [];
  const r = await q.query<RunRow & { pending_commands: boolean }>(
    // The rows are locked first, by id (runsLockedById). `offered_at` is moved strictly past
    // `accepted_at` even when clock_timestamp() ties it (1 ms on PGlite) or steps back.
    `with o as ${runsLockedById(
      `r.status in (${statusesSql('handBack')}) and r.started_at is null`,
      ' join jsonb_to_recordset($1::jsonb) as k(ws text, holder text) on r.workstation_id = k.ws and r.lease_holder = k.holder',
    )}
     update runs r set offered_at = greatest(clock_timestamp(), r.accepted_at + interval '1 millisecond')
       from o, jsonb_to_recordset($1::jsonb) as k(ws text, holder text), leases l
      where r.id = o.id and r.workstation_id = k.ws and r.lease_holder = k.holder
        and l.resource = r.id and l.holder = r.lease_holder and l.fencing_token = r.fencing_token
        and r.status in (${statusesSql('handBack')}) and r.started_at is null and l.expires_at > clock_timestamp()
     returning r.*, l.holder as l_holder, l.fencing_token as l_token, l.expires_at as l_expires_at,
            ${pendingCommandsSql('r.id', 'select id from o')} as pending_commands`,
    [JSON.stringify(links)],
  );
  return r.rows.sort((a, b) => Number(a.position) - Number(b.position)).map(grantOf);
}

function grantOf(row: RunRow & { pending_commands: boolean }): ClaimGrant {
  const run = toRun(row);
  return {
    run,
    sealed: row.secret_env ?? null,
    fencingToken: run.lease!.fencing_token,
    expiresAt: run.lease!.expires_at,
    nextEventSeq: Number(row.next_event_seq),
    pendingCommands: row.pending_commands,
  };
}

/**
 * claim, second half: binds a lease the caller already took (through the lease store) to the
 * run. False when the run is no longer claimable by this workstation (the caller gives the
 * lease back).
 *
 * @example
 * if (!(await bindClaim(db, 'run_1', 'ws_1', 'ws_1/agent-1', grant.fencingToken))) await leases.release(…);
 */
export async function bindClaim(
  q: Queryable,
  runId: string,
  workstationId: string,
  holder: string,
  token: number,
): Promise<boolean> {
  const r = await q.query(
    `update runs set status = case when status = 'offered' then 'accepted' else status end, accepted_at = coalesce(accepted_at, now()),
            lease_holder = $3, fencing_token = $4
      where id = $1 and workstation_id = $2 and status in (${statusesSql('claim')})`,
    [runId, workstationId, holder, token],
  );
  return r.rowCount > 0;
}

/**
 * report events (status unchanged): holders' batches, any number of runs (each at most once),
 * in one fenced statement. For each, the new next seq, or `undefined` when its guard did not pass.
 *
 * @example
 * const [next] = await reportEventsMany(db, [{ runId: 'run_1', workstationId: 'ws_1', token: 3, batch }]);
 */
export async function reportEventsMany(
  q: Queryable,
  writes: Array<FencedWrite & { batch: EventBatch }>,
): Promise<Array<number | undefined>> {
  if (writes.length === 0) return [];
  const r = await q.query<{ k: number; next_event_seq: number | string }>(REPORT_EVENTS_SQL, [
    `[${writes.map((w, k) => itemJson(k, w)).join(',')}]`,
  ]);
  return byItem(writes.length, r.rows, (row) => Number(row.next_event_seq));
}

/**
 * report events for one run: {@link reportEventsMany} with one item.
 *
 * @example
 * const next = await reportEvents(db, 'run_1', 'ws_1', 3, batch);
 */
export async function reportEvents(
  q: Queryable,
  runId: string,
  workstationId: string,
  token: number,
  batch: EventBatch,
): Promise<number | undefined> {
  return (await reportEventsMany(q, [{ runId, workstationId, token, batch }]))[0];
}

/**
 * start (`accepted → running`) with optional events, for any number of runs (each at most
 * once) in one fenced statement; per item `undefined` when its guard did not pass.
 *
 * @example
 * const [out] = await startMany(db, [{ runId: 'run_1', workstationId: 'ws_1', token: 3 }]);
 */
export async function startMany(
  q: Queryable,
  writes: FencedWrite[],
): Promise<Array<ReportAnswer | undefined>> {
  if (writes.length === 0) return [];
  const brief = writes.every((w) => w.brief);
  const r = await q.query<RunRow & { k: number }>(brief ? START_BRIEF_SQL : START_SQL, [
    `[${writes.map((w, k) => itemJson(k, w)).join(',')}]`,
  ]);
  return byItem(writes.length, r.rows, (row) => reportAnswer(row, brief));
}

/**
 * start for one run: {@link startMany} with one item.
 *
 * @example
 * const out = await start(db, 'run_1', 'ws_1', 3);
 */
export async function start(
  q: Queryable,
  runId: string,
  workstationId: string,
  token: number,
  batch?: EventBatch,
): Promise<ReportAnswer | undefined> {
  return (await startMany(q, [{ runId, workstationId, token, batch }]))[0];
}

/**
 * start, on a run the caller locked and fenced inside its transaction (the lifecycle's checked
 * path), now or `startedMsAgo` ms ago (a start reported with the run's end). A run that is
 * already running stays so.
 *
 * @example
 * await startLocked(tx, 'run_1');
 */
export async function startLocked(tx: Queryable, runId: string, startedMsAgo = 0): Promise<void> {
  await tx.query(
    `update runs set status = 'running', started_at = greatest(accepted_at, now() - $2::float8 * interval '1 millisecond')
      where id = $1 and status in (${statusesSql('start')})`,
    [runId, startedMsAgo],
  );
}

/**
 * finish (`accepted | running → completed | failed | cancelled | blocked`) for any number of
 * runs (each at most once) in one fenced statement: optional events, the outcome,
 * `terminal_status`, open commands cancelled, lease released. Per item `undefined` when its
 * guard did not pass.
 *
 * @example
 * const [out] = await finishMany(db, [{ runId: 'run_1', workstationId: 'ws_1', token: 3, outcome: { status: 'completed', exitCode: 0 } }]);
 */
export async function finishMany(
  q: Queryable,
  writes: Array<FencedWrite & { outcome: TerminalOutcome }>,
): Promise<Array<ReportAnswer | undefined>> {
  if (writes.length === 0) return [];
  const f = finishStatement(writes);
  const r = await q.query<RunRow & { k: number }>(f.statement.text, f.statement.params);
  return f.answers(r.rows);
}

/**
 * {@link finishMany} as a statement to send in someone else's transaction (a scheduling pass's,
 * `Scheduler.withNextPass`) and the answers its rows make, per write.
 *
 * @example
 * const f = finishStatement(writes); const answers = f.answers((await tx.query(f.statement.text, f.statement.params)).rows);
 */
export function finishStatement(writes: Array<FencedWrite & { outcome: TerminalOutcome }>): {
  statement: Statement;
  answers: (rows: unknown[]) => Array<ReportAnswer | undefined>;
} {
  const items = writes.map((w, k) => {
    const f = w.outcome;
    const extra = `,"status":${JSON.stringify(f.status)},"exit_code":${f.exitCode ?? null},"failure_kind":${JSON.stringify(f.failureKind ?? null)},"message":${JSON.stringify(f.message ?? null)},"terminal":${terminalJson(f)},"started_ago":${f.startedMsAgo ?? null}`;
    return itemJson(k, w, extra);
  });
  const brief = writes.every((w) => w.brief);
  return {
    statement: { text: brief ? FINISH_BRIEF_SQL : FINISH_SQL, params: [`[${items.join(',')}]`] },
    answers: (rows) =>
      byItem(writes.length, rows as Array<RunRow & { k: number }>, (row) => reportAnswer(row, brief)),
  };
}

/**
 * finish for one run: {@link finishMany} with one item.
 *
 * @example
 * const out = await finish(db, 'run_1', 'ws_1', 3, { status: 'completed', exitCode: 0 });
 */
export async function finish(
  q: Queryable,
  runId: string,
  workstationId: string,
  token: number,
  f: TerminalOutcome,
  batch?: EventBatch,
): Promise<ReportAnswer | undefined> {
  return (await finishMany(q, [{ runId, workstationId, token, outcome: f, batch }]))[0];
}

/** A renewal of the lease of a run by its holder. */
export interface RenewWrite {
  runId: string;
  workstationId: string;
  token: number;
  leaseMs: number;
}

/**
 * renew (status unchanged): extends the leases of any number of active runs (each at most
 * once) in one statement, each held with the presented token by the run's holder on this
 * workstation. Per item the new expiry and `cancel_requested`, or `undefined` when it did not
 * apply (the caller finds out why).
 *
 * @example
 * const [out] = await renewMany(db, [{ runId: 'run_1', workstationId: 'ws_1', token: 3, leaseMs: 30_000 }]);
 */
export async function renewMany(
  q: Queryable,
  writes: RenewWrite[],
): Promise<Array<{ expiresAt: string; cancelRequested: boolean } | undefined>> {
  if (writes.length === 0) return [];
  const items = writes.map(
    (w, k) =>
      `{"k":${k},"run_id":${JSON.stringify(w.runId)},"ws":${JSON.stringify(w.workstationId)},"token":${Number(w.token)},"ttl":${Number(w.leaseMs)}}`,
  );
  const r = await q.query<{ k: number; expires_at: Date | string; cancel_requested: boolean }>(RENEW_SQL, [
    `[${items.join(',')}]`,
  ]);
  return byItem(writes.length, r.rows, (row) => ({
    expiresAt: iso(row.expires_at)!,
    cancelRequested: row.cancel_requested,
  }));
}

/**
 * finish, on a run the caller locked inside its transaction: records the outcome, appends the
 * `terminal_status` event and cancels its unfinished commands (the caller releases the lease).
 * False, and nothing written, when the run had already ended.
 *
 * @example
 * await finishLocked(tx, id, { status: 'completed', exitCode: 0 });
 */
export async function finishLocked(tx: Queryable, runId: string, f: TerminalOutcome): Promise<boolean> {
  const r = await tx.query(
    `update runs set status = $2, exit_code = $3, failure_kind = $4, failure_message = $5, finished_at = now() where id = $1 and status not in ('completed', 'failed', 'cancelled', 'blocked')`,
    [runId, f.status, f.exitCode ?? null, f.failureKind ?? null, f.message ?? null],
  );
  // a run that had already ended gets no second `terminal_status`
  if (r.rowCount === 0) return false;
  await appendSystemEvent(tx, runId, 'terminal_status', terminalPayload(f));
  await cancelOpenCommands(tx, runId);
  return true;
}

/**
 * lose runner, or requeue: ends the attempt of a locked run whose runner went away (lease
 * expired or released). A cancel-requested run is cancelled; a run its runner released before
 * `running` is re-queued with `attempt + 1` while attempts remain (`mayRequeue`); anything else,
 * including an expired lease on an `accepted` run, fails with `runner-lost`, so no run is ever
 * started twice. The attempt's lease is given up in the same transaction (fenced by its holder
 * and token), whichever way it ends.
 *
 * @example
 * const outcome = await loseRunner(tx, state, 'expired', 'the lease expired');
 */
export async function loseRunner(
  tx: Queryable,
  s: RunState,
  cause: LostCause,
  message: string,
): Promise<LostOutcome> {
  if (s.cancel_requested) {
    await finishLocked(tx, s.id, {
      status: 'cancelled',
      failureKind: 'cancelled',
      message: `cancelled; ${message}`,
    });
    await releaseAttemptLease(tx, s);
    return 'cancelled';
  }
  if (s.attempt < s.max_attempts && mayRequeue(s.status, cause)) {
    const requeued = await endAttempt(tx, s, 'requeue', {
      event: { message: `${message}; re-queued`, failure_kind: 'runner-lost', attempt: s.attempt },
      outcome: { status: 'failed', failureKind: 'runner-lost', message: `${message}; re-queued` },
      delayS: 0,
    });
    if (requeued) {
      await releaseAttemptLease(tx, s);
      runPathMetrics.requeues.inc({ reason: 'runner-lost' });
      return 'requeued';
    }
  }
  const ended = await finishOrRetry(tx, s, { status: 'failed', failureKind: 'runner-lost', message });
  return ended === 'retried' ? 'retried' : 'failed';
}

/**
 * Gives up the lease of a locked run's attempt inside the caller's transaction, fenced by the
 * holder and token the run row carried (`s`, read before the transition): a lease already
 * swept, released or taken over is left alone. In the transaction that ends the attempt, so no
 * moment exists in which the run is queued (or ended) while its old lease is still held.
 */
async function releaseAttemptLease(tx: Queryable, s: RunState): Promise<void> {
  if (s.lease_holder !== null && s.fencing_token !== null)
    await releaseLease(tx, s.id, s.lease_holder, s.fencing_token);
}

// An attempt that ends without ending the run (`requeue`, `retry`), in ONE statement guarded by
// the transition's statuses: the `error` event that says so at the run's next seq (the
// attempt's last event), the attempt kept in `run_attempts` with its outcome and event range
// (from the end of the previous attempt to that event), and the run back in the queue with
// `attempt + 1`. Either all three happen or none (no "retrying" event on a run that was not).
// $1 run, $2 status, $3 exit code, $4 failure kind, $5 message, $6 delay (s), $7 the event.
const endAttemptSql = (transition: 'requeue' | 'retry') => `
with r as (
  select id, attempt, workstation_id, accepted_at, started_at, next_event_seq from runs
   where id = $1 and status in (${statusesSql(transition)})
), e as (
  insert into run_events (run_id, seq, type, payload) select r.id, r.next_event_seq, 'error', $7::jsonb from r
), a as (
  insert into run_attempts (run_id, attempt, status, workstation_id, exit_code, failure_kind, failure_message,
                            accepted_at, started_at, finished_at, first_event_seq, last_event_seq, retry_at)
  select r.id, r.attempt, $2, r.workstation_id, $3, $4, $5, r.accepted_at, r.started_at, now(),
         coalesce((select max(x.last_event_seq) + 1 from run_attempts x where x.run_id = r.id), 1), r.next_event_seq,
         now() + $6::float8 * interval '1 second'
    from r
)
update runs q set status = 'queued', attempt = q.attempt + 1, next_event_seq = r.next_event_seq + 1, workstation_id = null,
                  lease_holder = null, fencing_token = null, offered_at = null, accepted_at = null${
                    transition === 'retry'
                      ? `, started_at = null, exit_code = null, failure_kind = null, failure_message = null,
                  not_before = now() + $6::float8 * interval '1 second'`
                      : ''
                  }
  from r where q.id = r.id
returning q.id`;
const REQUEUE_SQL = endAttemptSql('requeue');
const RETRY_SQL = endAttemptSql('retry');

/**
 * requeue (`accepted → queued`) or retry (`accepted | running → queued`), `attempt + 1`: one
 * statement (`endAttemptSql`). False when the run is not in a status `transition` applies in
 * (then nothing was written).
 */
async function endAttempt(
  tx: Queryable,
  s: RunState,
  transition: 'requeue' | 'retry',
  o: { event: Record<string, unknown>; outcome: TerminalOutcome; delayS: number },
): Promise<boolean> {
  const f = o.outcome;
  const r = await tx.query(transition === 'retry' ? RETRY_SQL : REQUEUE_SQL, [
    s.id,
    f.status,
    f.exitCode ?? null,
    f.failureKind ?? null,
    f.message ?? null,
    o.delayS,
    JSON.stringify(o.event),
  ]);
  return r.rowCount > 0;
}

/**
 * retry (`accepted | running → queued`, `attempt + 1`): the run's retry policy takes this
 * failure (`retryDelayS`), so the attempt is kept in `run_attempts` with its outcome and events,
 * an `error` event says so, and the run waits in the queue until `not_before` (the backoff).
 */
async function retry(tx: Queryable, s: RunState, f: TerminalOutcome, delayS: number): Promise<boolean> {
  // "exit code 3", or the failure kind and what the reporter said of it ("timeout: exceeded …")
  const why =
    f.failureKind === 'nonzero-exit' && f.exitCode !== undefined
      ? `exit code ${f.exitCode}`
      : `${f.failureKind ?? f.status}${f.message ? `: ${f.message}` : ''}`;
  const retried = await endAttempt(tx, s, 'retry', {
    event: {
      message: `attempt ${s.attempt} failed (${why}); retrying as attempt ${s.attempt + 1} of ${s.max_attempts}${delayS > 0 ? ` in ${delayS}s` : ''}`,
      failure_kind: f.failureKind ?? null,
      ...(f.exitCode === undefined ? {} : { exit_code: f.exitCode }),
      attempt: s.attempt,
      retry_in_s: delayS,
    },
    outcome: f,
    delayS,
  });
  if (retried) runPathMetrics.requeues.inc({ reason: 'retry' });
  return retried;
}

/**
 * The terminal decision for a locked, active run whose attempt ended with `f`: when its retry
 * policy takes the failure and attempts remain, `retry` (back to the queue); otherwise
 * `finishLocked`. Either way the attempt's lease is given up in the same transaction, fenced by
 * the holder and token `s` carries (so a retried run is never queued while its old lease is
 * still held, and a crash after the commit leaves no lease behind).
 *
 * @example
 * const ended = await finishOrRetry(tx, state, { status: 'failed', exitCode: 1, failureKind: 'nonzero-exit' });
 */
export async function finishOrRetry(
  tx: Queryable,
  s: RunState,
  f: TerminalOutcome,
): Promise<'retried' | 'finished'> {
  const delayS =
    f.status === 'failed' ? retryDelayS(s, { failureKind: f.failureKind, exitCode: f.exitCode }) : undefined;
  const retried = delayS !== undefined && (await retry(tx, s, f, delayS));
  if (!retried) await finishLocked(tx, s.id, f);
  await releaseAttemptLease(tx, s);
  return retried ? 'retried' : 'finished';
}

/**
 * cancel, in one transaction: queued or offered runs end at once; accepted or running ones
 * get `cancel_requested` and end when their agent reports `cancelled`. A terminal run throws
 * `run-not-active`; asking twice is harmless. `undefined` for an unknown run.
 *
 * @example
 * const out = await cancel(db, 'run_1'); // { immediate: true, workstationId: null }
 * await cancel(db, 'run_1', (tx, out) => publishSignals(tx, out));
 */
export async function cancel(
  db: Database,
  runId: string,
  /** Runs in the same transaction after the write (the caller publishes its signals there). */
  inTx?: (tx: Queryable, out: CancelOutcome) => Promise<void>,
): Promise<CancelOutcome | undefined> {
  return db.transaction(async (tx) => {
    const s = await readRunState(tx, runId, true);
    if (!s) return undefined;
    if (isTerminalRunStatus(s.status)) throw runNotActive();
    await tx.query('update runs set cancel_requested = true where id = $1', [runId]);
    const immediate = s.status === 'queued' || s.status === 'offered';
    if (immediate)
      await finishLocked(tx, runId, {
        status: 'cancelled',
        failureKind: 'cancelled',
        message: 'cancelled before it started',
      });
    const out = { immediate, workstationId: s.workstation_id };
    await inTx?.(tx, out);
    return out;
  });
}

/**
 * Up to `limit` runs whose lease ran out, locked inside the caller's transaction in id order
 * before their leases are swept (lock order), skipping any another transaction holds — a
 * holder's write in flight, another replica's sweep: the next sweep takes it. ONE statement
 * picks and locks them (a join of the expired leases to their runs), so the limit counts only
 * runs it could lock: expired leases of runs that are gone, or of runs held elsewhere, never
 * fill a batch and starve the others (the sweep takes the leases without a run apart,
 * {@link LEASE_WITHOUT_RUN}). Returns the ids locked.
 *
 * @example
 * const ids = await lockExpiredRuns(tx, 100);
 */
export async function lockExpiredRuns(tx: Queryable, limit: number): Promise<string[]> {
  const r = await tx.query<{ id: string }>(
    `select r.id from leases l join runs r on r.id = l.resource where ${leaseSql.anyExpired()} and ${leaseSql.expired({ lease: 'l' })}
      order by r.id limit $1 for no key update of r skip locked`,
    [limit],
  );
  return r.rows.map((row) => row.id);
}

/** A condition on `leases` (`sweepExpired({ where })`): the lease's run is gone (an operator deleted it). */
export const LEASE_WITHOUT_RUN = 'not exists (select 1 from runs wr where wr.id = leases.resource)';

/** What a cancel did: ended the run at once (`immediate`), and which workstation holds it. */
export interface CancelOutcome {
  immediate: boolean;
  workstationId: string | null;
}

/**
 * expire queued (`queued → blocked`, failure kind `unplaceable`): runs never placed within
 * their `queue_timeout_s`, up to `limit` per call, rows another sweeper holds skipped. Returns
 * their ids.
 *
 * @example
 * const blocked = await expireQueued(db);
 */
export async function expireQueued(db: Database, limit = 100): Promise<string[]> {
  return db.transaction(async (tx) => {
    const r = await tx.query<{ id: string; queue_timeout_s: number }>(
      `select id, queue_timeout_s from runs where ${QUEUE_EXPIRED_WHERE}
        order by position limit $1 for update skip locked`,
      [limit],
    );
    for (const row of r.rows) {
      await finishLocked(tx, row.id, {
        status: 'blocked',
        failureKind: 'unplaceable',
        message: `not placed within its queue timeout of ${row.queue_timeout_s}s`,
      });
    }
    return r.rows.map((row) => row.id);
  });
}

/**
 * time out (`accepted | running → failed`, failure kind `timeout`): the backstop for an agent
 * that did not stop a run past its `timeout_s` (counted from `started_at`, else `accepted_at`)
 * plus `graceS`. Ends the run and gives up its lease, so the holder's next renewal or report
 * is refused and it stops the workload. Returns the runs and their workstations; `publish`
 * is given them inside the transaction, to publish what the agents must hear with the write.
 *
 * @example
 * const ended = await timeOutOverdue(db, 60);
 */
export async function timeOutOverdue(
  db: Database,
  graceS: number,
  limit = 100,
  publish?: (tx: Queryable, ended: Array<{ id: string; workstation_id: string | null }>) => Promise<void>,
): Promise<Array<{ id: string; workstation_id: string | null }>> {
  return db.transaction(async (tx) => {
    const r = await tx.query<{ id: string; workstation_id: string | null; timeout_s: number }>(
      `select id, workstation_id, timeout_s from runs
        where ${OVERDUE_WHERE('$1')}
        order by position limit $2 for update skip locked`,
      [graceS, limit],
    );
    // Their leases are given up one by one, waiting for each: in id order (lock order; the runs
    // were taken without waiting).
    for (const row of [...r.rows].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
      // the lease is given up in this transaction (finishOrRetry)
      await finishOrRetry(tx, (await readRunState(tx, row.id))!, {
        status: 'failed',
        failureKind: 'timeout',
        message: `exceeded its timeout of ${row.timeout_s}s (ended by the control plane: the agent did not stop it)`,
      });
    }
    const ended = r.rows.map((row) => ({ id: row.id, workstation_id: row.workstation_id }));
    if (publish && ended.length > 0) await publish(tx, ended);
    return ended;
  });
}
