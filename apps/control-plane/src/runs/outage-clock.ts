import { leaseSql } from '@runt/leases';
import type { Queryable } from '@runt/sql';

const CREDIT_SQL = leaseSql.creditPause({ liveAt: '$1::timestamptz', byMs: '$2' });

/**
 * Leases outlive a control-plane outage (issue 8, defect 5). Called at the start of every
 * sweep, in the sweep's transaction: reads when any replica last swept (`sweep_clock`, locked),
 * and when that was more than `thresholdMs` ago — the control plane or its database was down,
 * so no agent could renew — credits the whole gap to every lease that was still live at the
 * last sweep, before any of them is judged expired. Then stamps the clock. Returns the gap
 * credited in ms (0 when none).
 *
 * @example
 * const creditedMs = await creditOutage(tx, 10_000);
 */
export async function creditOutage(tx: Queryable, thresholdMs: number): Promise<number> {
  const r = await tx.query<{ swept_at: string | Date; gap_ms: number | string }>(
    `select swept_at, extract(epoch from clock_timestamp() - swept_at) * 1000 as gap_ms from sweep_clock where id = 1 for update`,
  );
  const last = r.rows[0];
  let credited = 0;
  if (last && Number(last.gap_ms) > thresholdMs) {
    credited = Math.round(Number(last.gap_ms));
    const liveAt = last.swept_at instanceof Date ? last.swept_at.toISOString() : last.swept_at;
    await tx.query(CREDIT_SQL, [liveAt, credited]);
  }
  await tx.query(
    `insert into sweep_clock (id, swept_at) values (1, clock_timestamp()) on conflict (id) do update set swept_at = excluded.swept_at`,
  );
  return credited;
}
