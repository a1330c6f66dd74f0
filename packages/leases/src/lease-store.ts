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
}

/** Leases with fencing tokens over a SQL table; every time judgement uses the database clock. */
export interface LeaseStore {
  /**
   * Takes the lease on `resource` for `ttlMs`, or throws `LeaseConflictError` (`held`) when
   * another holder has a live one. A claim by the holder that already has a live lease returns
   * the SAME token and extends it (safe to retry); any other successful claim bumps the token.
   */
  claim(resource: string, holder: string, ttlMs: number): Promise<LeaseGrant>;
  /** Extends a live lease to `now() + ttlMs`; throws `LeaseConflictError` when it is not held by `holder` with `fencingToken` or has expired. */
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

const TTL = `clock_timestamp() + $3::float8 * interval '1 millisecond'`;
// "The same holder re-claims a lease it still holds": keep token and acquired_at. Each
// clock_timestamp() call reads the clock again, after the row lock was taken, so a claim that
// waited behind another transaction judges expiry at the moment it decides.
const SAME_LIVE = `l.holder = excluded.holder and l.expires_at > clock_timestamp()`;

const CLAIM_SQL = `
insert into leases as l (resource, holder, fencing_token, expires_at, acquired_at, renewed_at)
values ($1, $2, 1, ${TTL}, clock_timestamp(), null)
on conflict (resource) do update set
  fencing_token = case when ${SAME_LIVE} then l.fencing_token else l.fencing_token + 1 end,
  acquired_at = case when ${SAME_LIVE} then l.acquired_at else clock_timestamp() end,
  renewed_at = case when ${SAME_LIVE} then clock_timestamp() else null end,
  holder = excluded.holder,
  expires_at = ${TTL}
where l.holder is null or l.expires_at <= clock_timestamp() or l.holder = excluded.holder
returning ${LEASE_COLUMNS}`;

const RENEW_SQL = `
update leases set expires_at = ${TTL}, renewed_at = clock_timestamp()
where resource = $1 and holder = $2 and fencing_token = $4 and expires_at > clock_timestamp()
returning ${LEASE_COLUMNS}`;

const RELEASE_SQL = `
update leases set holder = null, expires_at = least(expires_at, clock_timestamp())
where resource = $1 and holder = $2 and fencing_token = $3
returning ${LEASE_COLUMNS}`;

const EXPIRED_WHERE = 'holder is not null and expires_at <= clock_timestamp()';

const SWEEP_SQL = `
with victims as (
  select ${LEASE_COLUMNS} from leases where ${EXPIRED_WHERE}
  order by expires_at limit $1 for update skip locked
)
update leases l set holder = null
from victims v where l.resource = v.resource
returning v.resource, v.holder, v.fencing_token, v.expires_at, v.acquired_at, v.renewed_at`;

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
    const r = await db.query<LeaseRow & { live: boolean }>(
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
      const r = await db.query<LeaseRow>(RENEW_SQL, [resource, holder, ttlMs, fencingToken]);
      const row = r.rows[0];
      if (row) return toLeaseRecord(row) as LeaseGrant;
      const reason = await diagnose(resource, holder, fencingToken);
      throw new LeaseConflictError(resource, reason, `cannot renew ${resource} with fencing token ${fencingToken}: ${reason}`);
    },

    async release(resource, holder, fencingToken) {
      requireText('resource', resource);
      requireText('holder', holder);
      requireToken(fencingToken);
      const r = await db.query<LeaseRow>(RELEASE_SQL, [resource, holder, fencingToken]);
      const row = r.rows[0];
      return row ? toLeaseRecord(row) : undefined;
    },

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
      const r = await q.query<LeaseRow>(SWEEP_SQL, [limitOf(opts)]);
      return r.rows.map((row) => toLeaseRecord(row) as LeaseGrant);
    },
  };
}
