import type { Database, Queryable } from '@runt/sql';
import { assertFenced } from './assert-fenced.js';
import { LeaseConflictError, type LeaseConflictReason } from './errors.js';
import {
  LEASE_COLUMNS,
  type LeaseRecord,
  type LeaseRow,
  requireLeaseMs,
  requireText,
  requireToken,
  toLeaseRecord,
} from './lease-record.js';

/** A lease a holder has just claimed or renewed. */
export interface LeaseGrant extends LeaseRecord {
  holder: string;
}

/** Options of the sweeper helpers. */
export interface ExpiredLeaseOptions {
  /** At most this many leases (default 100). */
  limit?: number;
  /** Run inside the caller's transaction, e.g. together with failing the runs. */
  tx?: Queryable;
  /**
   * Only these resources (`sweepExpired`): a caller that locked what the leases guard first
   * (the control plane locks the runs, in id order, before their leases) sweeps no other.
   */
  resources?: string[];
  /**
   * An extra SQL condition on the lease (`sweepExpired`; a condition on `leases`, e.g.
   * `not exists (…)`): the control plane sweeps here the leases whose run is gone, which no
   * run lock can come first for.
   */
  where?: string;
}

/** Leases with fencing tokens over a SQL table; every time judgement uses the database clock. */
export interface LeaseStore {
  /**
   * Takes the lease on `resource` for `ttlMs`, or throws `LeaseConflictError` (`held`) when
   * another holder has a live one. A claim by the holder that already has a live lease returns
   * the SAME token and extends it (safe to retry); any other successful claim bumps the token.
   */
  claim(resource: string, holder: string, ttlMs: number): Promise<LeaseGrant>;
  /**
   * Extends a live lease to `now() + ttlMs`; throws `LeaseConflictError` when it is not held by
   * `holder` with `fencingToken` or has expired. Runs on the database's priority lane
   * (`db.priority`), ahead of queued work, so a busy database does not let a lease expire while
   * its renewal waits.
   */
  renew(resource: string, holder: string, fencingToken: number, ttlMs: number): Promise<LeaseGrant>;
  /** Gives the lease up (also an expired, not yet re-claimed one). Returns the released row, or `undefined` when `holder`/`fencingToken` did not hold it (already released, swept, taken over). */
  release(resource: string, holder: string, fencingToken: number): Promise<LeaseRecord | undefined>;
  /** `assertFenced(tx, resource, fencingToken)`: see the standalone function. */
  assertFenced(tx: Queryable, resource: string, fencingToken: number): Promise<LeaseRecord>;
  /** The lease row of `resource` (held or not), `undefined` when it was never claimed. */
  get(resource: string): Promise<(LeaseRecord & { live: boolean }) | undefined>;
  /** Held leases whose `expires_at` has passed by the database clock, oldest first. */
  listExpired(opts?: ExpiredLeaseOptions): Promise<LeaseGrant[]>;
  /** Like `listExpired`, but also clears their holder (keeping the token) and returns them with the holder they had. Concurrent sweepers skip each other's rows. */
  sweepExpired(opts?: ExpiredLeaseOptions): Promise<LeaseGrant[]>;
}

/**
 * Where a lease statement takes its values: SQL expressions, usually placeholders (`'$1'`) or
 * columns of a surrounding CTE. Callers that fold a lease step into a bigger statement (the
 * control plane claims a lease and accepts a run in one round trip) build it from these
 * fragments, so the lease rules stay here and nobody keeps a copy of them.
 */
export interface LeaseSqlRefs {
  resource: string;
  holder: string;
}

/**
 * The SQL of the lease store's steps, as fragments to embed in a caller's statement. Every
 * time judgement uses the database's `clock_timestamp()`.
 *
 * @example
 * const sql = `with l as (${leaseSql.claim({ resource: '$1', holder: '$2', ttlMs: '$3' })}) select * from l`;
 */
export const leaseSql = {
  /**
   * The claim: an `insert … on conflict do update … where` that returns the lease columns
   * (`resource, holder, fencing_token, expires_at, acquired_at, renewed_at`) when it was
   * granted and no row when another holder has a live lease. The same holder re-claiming a
   * live lease keeps its token and `acquired_at`; any other grant bumps the token. `when` is an
   * extra condition for inserting at all (e.g. "the run is still offered to this holder").
   * `from` names the tables the refs read when several leases are claimed in one statement
   * (one row each, distinct resources); a re-claim then takes the new expiry its row computed.
   * `orderBy` (with `from`) is the order the rows are claimed, and so their leases locked, in:
   * the resource, so a multi-row claim keeps the lock order of every other multi-lease write.
   */
  claim(p: LeaseSqlRefs & { ttlMs: string; when?: string; from?: string; orderBy?: string }): string {
    const ttl = `clock_timestamp() + ${p.ttlMs}::float8 * interval '1 millisecond'`;
    // "The same holder re-claims a lease it still holds": keep token and acquired_at. Each
    // clock_timestamp() call reads the clock again, after the row lock was taken, so a claim
    // that waited behind another transaction judges expiry at the moment it decides.
    const sameLive = `l.holder = excluded.holder and l.expires_at > clock_timestamp()`;
    return `insert into leases as l (resource, holder, fencing_token, expires_at, acquired_at, renewed_at)
select ${p.resource}, ${p.holder}, 1, ${ttl}, clock_timestamp(), null${p.from ? ` from ${p.from}` : ''}${p.when ? ` where ${p.when}` : ''}${p.orderBy ? ` order by ${p.orderBy}` : ''}
on conflict (resource) do update set
  fencing_token = case when ${sameLive} then l.fencing_token else l.fencing_token + 1 end,
  acquired_at = case when ${sameLive} then l.acquired_at else clock_timestamp() end,
  renewed_at = case when ${sameLive} then clock_timestamp() else null end,
  holder = excluded.holder,
  expires_at = ${p.from ? 'excluded.expires_at' : ttl}
where l.holder is null or l.expires_at <= clock_timestamp() or l.holder = excluded.holder
returning l.resource, l.holder, l.fencing_token, l.expires_at, l.acquired_at, l.renewed_at`;
  },

  /**
   * The renewal: extends a live lease held by `holder` with `token`; no row when it is not.
   * `from` names extra tables the refs use (several leases renewed in one statement) and `when`
   * is an extra condition on them.
   */
  renew(p: LeaseSqlRefs & { token: string; ttlMs: string; from?: string; when?: string }): string {
    return `update leases set expires_at = clock_timestamp() + ${p.ttlMs}::float8 * interval '1 millisecond', renewed_at = clock_timestamp()${p.from ? ` from ${p.from}` : ''}
where leases.resource = ${p.resource} and leases.holder = ${p.holder} and leases.fencing_token = ${p.token} and leases.expires_at > clock_timestamp()${p.when ? ` and ${p.when}` : ''}
returning leases.resource, leases.holder, leases.fencing_token, leases.expires_at, leases.acquired_at, leases.renewed_at`;
  },

  /**
   * The release: clears the holder (the row and its token stay, so tokens never go back) and
   * ends the lease now if it had not ended yet. `from` names extra tables the refs use.
   */
  release(p: LeaseSqlRefs & { token: string; from?: string }): string {
    return `update leases set holder = null, expires_at = least(leases.expires_at, clock_timestamp())${p.from ? ` from ${p.from}` : ''}
where leases.resource = ${p.resource} and leases.holder = ${p.holder} and leases.fencing_token = ${p.token}
returning leases.resource, leases.holder, leases.fencing_token, leases.expires_at, leases.acquired_at, leases.renewed_at`;
  },

  /**
   * Credits a pause to held leases: every lease still held and not yet expired at `liveAt` (the
   * last moment anyone could judge it) gets `byMs` more. Time in which nobody could renew a
   * lease (the control plane or its database down) then does not count against it. `when`: a
   * condition on no column of `leases` (e.g. `exists (…)`), planned as a one-time filter: when
   * false the update reads no lease at all, whatever plan the scan of `leases` gets.
   */
  creditPause(p: { liveAt: string; byMs: string; when?: string }): string {
    return `update leases set expires_at = expires_at + ${p.byMs}::float8 * interval '1 millisecond'
where holder is not null and expires_at > ${p.liveAt}${p.when ? ` and ${p.when}` : ''}`;
  },

  /**
   * A condition: the lease `lease` (an alias of `leases`) is held and has run out by the
   * database clock — what the sweep takes. One home for the sweep and a caller that picks the
   * expired leases it will sweep (joined to what they guard).
   */
  expired(p: { lease: string }): string {
    return `${p.lease}.holder is not null and ${p.lease}.expires_at <= clock_timestamp()`;
  },

  /**
   * A condition on no column: some lease is held and has run out — the first entry of the held
   * leases' expiry index (`min`: one probe of `leases_held_expires_at_idx`, whatever the
   * statistics say), planned as a one-time filter (a scalar subquery: its answer is a constant
   * of the statement, where `min(…) <= clock_timestamp()` outside it, volatile, was checked
   * per joined row). A sweep that puts it beside
   * {@link leaseSql.expired} reads nothing else while no lease has run out: its scan of the
   * expired leases, planned on a young table (no statistics: `holder is not null` taken for
   * 99.5 % of the rows) as a Seq Scan joined to a Seq Scan of what they guard, ran every sweep
   * over every lease and run ever made (issue 9: ~6,500 buffer hits a sweep after 20,000 runs).
   */
  anyExpired(): string {
    return `(select min(m.expires_at) <= clock_timestamp() from leases m where m.holder is not null)`;
  },

  /**
   * The leases of the resources `keys` lists (a query whose rows are `k`: its first column the
   * resource, each at most once), locked in resource order, as a CTE body that a multi-row write
   * joins (`with o as ${leaseSql.lockedByKeys(…)}`): each by its own probe of the primary key, one
   * scalar subquery per key, run in the keys' sorted order (the rows of a `materialized` CTE, so
   * they come, and are locked, in that order before the write touches any, whatever plan the
   * write gets; a key with no lease, or none `where` holds — a condition on `l` and `k` — gives a
   * null `resource`, which joins nothing). Two statements writing the same leases then never
   * wait on each other's rows in opposite orders (40P01). `no key update`: the lock an UPDATE
   * takes anyway.
   * A lookup of the keys as one array (`l.resource = any (array(…))`) is planned as a Seq Scan
   * of `leases` whenever the table was small at planning time — a prepared statement's generic
   * plan is made once per connection and kept until an ANALYZE, and a lease row is kept for
   * ever, so on a server without autovacuum the scan grew with every run ever held (issue 9:
   * ~20 buffer hits and 18,000 rows filtered per finished run after 20,000 runs). A probe per
   * key is an index scan whatever the statistics say.
   *
   * @example
   * `with u as (…), ol as ${leaseSql.lockedByKeys({ keys: 'select u.id from u' })} …`
   */
  lockedByKeys(p: { keys: string; where?: string }): string {
    return `materialized (select (select l.resource from leases l where l.resource = k.resource${p.where ? ` and ${p.where}` : ''} for no key update of l) as resource
  from (select * from (${p.keys}) k order by 1) k (resource))`;
  },

  /**
   * A condition: `token` is the current token of a held, live lease on `resource`. A fenced
   * `update … where` that includes it and locks the guarded row cannot interleave with a claim
   * that takes the lease over (the claim must lock the same row first).
   */
  heldWithToken(p: { resource: string; token: string }): string {
    return `exists (select 1 from leases fl where fl.resource = ${p.resource} and fl.fencing_token = ${p.token} and fl.holder is not null and fl.expires_at > clock_timestamp())`;
  },
};

const CLAIM_SQL = leaseSql.claim({ resource: '$1', holder: '$2', ttlMs: '$3' });
const RENEW_SQL = leaseSql.renew({ resource: '$1', holder: '$2', ttlMs: '$3', token: '$4' });
const RELEASE_SQL = leaseSql.release({ resource: '$1', holder: '$2', token: '$3' });

/**
 * Gives up the lease `holder` holds with `fencingToken`, on any `Queryable` (also inside the
 * caller's transaction). Returns the released row, or `undefined` when that holder and token
 * did not hold it (already released, swept, taken over).
 *
 * @example
 * await releaseLease(tx, 'run_1', 'ws_a', 3);
 */
export async function releaseLease(
  q: Queryable,
  resource: string,
  holder: string,
  fencingToken: number,
): Promise<LeaseRecord | undefined> {
  requireText('resource', resource);
  requireText('holder', holder);
  requireToken(fencingToken);
  const r = await q.query<LeaseRow>(RELEASE_SQL, [resource, holder, fencingToken]);
  const row = r.rows[0];
  return row ? toLeaseRecord(row) : undefined;
}

const EXPIRED_WHERE = leaseSql.expired({ lease: 'leases' });

const sweepSql = (only: boolean, where?: string) => `
with victims as (
  select ${LEASE_COLUMNS} from leases where ${EXPIRED_WHERE}${only ? ' and resource = any($2::text[])' : ''}${where ? ` and (${where})` : ''}
  order by expires_at limit $1 for update skip locked
)
update leases l set holder = null
from victims v where l.resource = v.resource
returning v.resource, v.holder, v.fencing_token, v.expires_at, v.acquired_at, v.renewed_at`;
const SWEEP_SQL = sweepSql(false);
const SWEEP_ONLY_SQL = sweepSql(true);

/**
 * Creates the SQL lease store over a `Database` from `@runt/sql` (PGlite or Postgres). Run
 * `migrate(db, leaseMigrations)` first; the store never migrates itself. Claims are one atomic
 * `insert … on conflict do update … where` statement, so concurrent claimers on any number of
 * connections or processes never both win; expiry is judged by the database's
 * `clock_timestamp()`, never by the caller's clock.
 *
 * @example
 * const store = createSqlLeaseStore(db);
 * const lease = await store.claim('run_1', 'ws_a', 30_000);
 * await store.renew('run_1', 'ws_a', lease.fencingToken, 30_000);
 * await store.release('run_1', 'ws_a', lease.fencingToken);
 */
export function createSqlLeaseStore(db: Database): LeaseStore {
  const limitOf = (opts?: ExpiredLeaseOptions): number => {
    const limit = opts?.limit ?? 100;
    return Number.isSafeInteger(limit) && limit > 0 ? limit : 100;
  };

  /** Best-effort reason for a refused renewal (racy by nature; only the message depends on it). */
  const diagnose = async (resource: string, holder: string, token: number): Promise<LeaseConflictReason> => {
    const r = await db.priority.query<LeaseRow & { live: boolean }>(
      `select ${LEASE_COLUMNS}, expires_at > clock_timestamp() as live from leases where resource = $1`,
      [resource],
    );
    const row = r.rows[0];
    if (!row || row.holder === null) return 'not-held';
    if (Number(row.fencing_token) !== token) return 'stale-token';
    if (row.holder !== holder) return 'held';
    return row.live ? 'held' : 'expired';
  };

  return {
    async claim(resource, holder, ttlMs) {
      requireText('resource', resource);
      requireText('holder', holder);
      requireLeaseMs('ttlMs', ttlMs);
      const r = await db.query<LeaseRow>(CLAIM_SQL, [resource, holder, ttlMs]);
      const row = r.rows[0];
      if (!row) throw new LeaseConflictError(resource, 'held', `${resource} is leased by another holder`);
      return toLeaseRecord(row) as LeaseGrant;
    },

    async renew(resource, holder, fencingToken, ttlMs) {
      requireText('resource', resource);
      requireText('holder', holder);
      requireToken(fencingToken);
      requireLeaseMs('ttlMs', ttlMs);
      // The priority lane: a renewal must not queue behind the work its lease protects.
      const r = await db.priority.query<LeaseRow>(RENEW_SQL, [resource, holder, ttlMs, fencingToken]);
      const row = r.rows[0];
      if (row) return toLeaseRecord(row) as LeaseGrant;
      const reason = await diagnose(resource, holder, fencingToken);
      throw new LeaseConflictError(
        resource,
        reason,
        `cannot renew ${resource} with fencing token ${fencingToken}: ${reason}`,
      );
    },

    release: (resource, holder, fencingToken) => releaseLease(db, resource, holder, fencingToken),

    assertFenced,

    async get(resource) {
      requireText('resource', resource);
      const r = await db.query<LeaseRow & { live: boolean }>(
        `select ${LEASE_COLUMNS}, holder is not null and expires_at > clock_timestamp() as live from leases where resource = $1`,
        [resource],
      );
      const row = r.rows[0];
      return row ? { ...toLeaseRecord(row), live: row.live } : undefined;
    },

    async listExpired(opts) {
      const q = opts?.tx ?? db;
      const r = await q.query<LeaseRow>(
        `select ${LEASE_COLUMNS} from leases where ${EXPIRED_WHERE} order by expires_at limit $1`,
        [limitOf(opts)],
      );
      return r.rows.map((row) => toLeaseRecord(row) as LeaseGrant);
    },

    async sweepExpired(opts) {
      const q = opts?.tx ?? db;
      const only = opts?.resources;
      if (only?.length === 0) return [];
      const sql = opts?.where ? sweepSql(!!only, opts.where) : only ? SWEEP_ONLY_SQL : SWEEP_SQL;
      const r = await q.query<LeaseRow>(sql, only ? [limitOf(opts), only] : [limitOf(opts)]);
      return r.rows.map((row) => toLeaseRecord(row) as LeaseGrant);
    },
  };
}
