import type { Queryable } from '@runt/sql';
import { LeaseConflictError } from './errors.js';
import {
  LEASE_COLUMNS,
  type LeaseRecord,
  type LeaseRow,
  requireText,
  requireToken,
  toLeaseRecord,
} from './lease-record.js';

/**
 * Checks, inside the caller's own transaction, that `fencingToken` is the current token of a live
 * lease on `resource`, and throws `LeaseConflictError` when it is not (stale token, released,
 * swept or expired by the database clock). It locks the lease row `for share`, so no claim can
 * hand the lease to someone else until the caller's transaction ends: the fenced write that
 * follows commits under the token that was checked. Call it first, then write.
 *
 * @example
 * await db.transaction(async (tx) => {
 *   await assertFenced(tx, runId, fencingToken);
 *   await tx.query('insert into events (run_id, seq, type) values ($1, $2, $3)', [runId, seq, 'log']);
 * });
 */
export async function assertFenced(
  tx: Queryable,
  resource: string,
  fencingToken: number,
): Promise<LeaseRecord> {
  requireText('resource', resource);
  requireToken(fencingToken);
  const r = await tx.query<LeaseRow & { live: boolean }>(
    `select ${LEASE_COLUMNS}, expires_at > clock_timestamp() as live from leases where resource = $1 for share`,
    [resource],
  );
  const row = r.rows[0];
  if (!row) throw new LeaseConflictError(resource, 'not-held', `no lease on ${resource}`);
  const record = toLeaseRecord(row);
  if (record.fencingToken !== fencingToken) {
    throw new LeaseConflictError(
      resource,
      'stale-token',
      `fencing token ${fencingToken} is not current for ${resource}`,
    );
  }
  if (record.holder === null)
    throw new LeaseConflictError(resource, 'not-held', `the lease on ${resource} was released`);
  if (!row.live) throw new LeaseConflictError(resource, 'expired', `the lease on ${resource} has expired`);
  return record;
}
