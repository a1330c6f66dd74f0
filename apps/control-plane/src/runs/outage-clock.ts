import { leaseSql } from '@runt/leases';
import type { Queryable } from '@runt/sql';

// The clock read (locked), the credit and the stamp as ONE statement — its own transaction, one
// round trip where a transaction of three statements took three (`BEGIN` with the read, the
// stamp, `COMMIT`), on every sweep of every replica, once a second by default: periodic work
// beside issue 10's offer path. `$1`: the threshold in ms. Without a gap over it (every sweep
// but the first after an outage) the credit's `when` is false, a one-time filter: the update
// reads no lease, whichever plan its scan of `leases` (every lease row kept) would take. The main query reads `last`, so the read and
// its row lock come before the data-modifying CTEs, which run after it; all of them read the
// statement's one snapshot, so `credit` judges the leases as they were before the stamp.
// `extra`: more columns of the main query (the sweep's probe, `sweepProbe`); they read the same
// snapshot, so they see the leases as they were before the credit (a credited lease can only
// look expired to them: the sweep then runs the step, which finds it live).
const clockSql = (extra = '') => `with last as materialized (
  select swept_at, extract(epoch from clock_timestamp() - swept_at) * 1000 as gap_ms
    from sweep_clock where id = 1 for update
), credit as (
  ${leaseSql.creditPause({
    liveAt: '(select l.swept_at from last l where l.gap_ms > $1::float8)',
    byMs: '(select round(l.gap_ms) from last l)',
    when: 'exists (select 1 from last l where l.gap_ms > $1::float8)',
  })}
), stamp as (
  insert into sweep_clock (id, swept_at) values (1, clock_timestamp())
  on conflict (id) do update set swept_at = excluded.swept_at
)
select coalesce((select round(l.gap_ms) from last l where l.gap_ms > $1::float8), 0)::float8 as credited${extra}`;
const CLOCK_SQL = clockSql();

/**
 * Leases outlive a control-plane outage (issue 8, defect 5). Called at the start of every
 * sweep, as one statement ({@link CLOCK_SQL}): reads when any replica last swept (`sweep_clock`, locked),
 * and when that was more than `thresholdMs` ago — the control plane or its database was down,
 * so no agent could renew — credits the whole gap to every lease that was still live at the
 * last sweep, before any of them is judged expired. Then stamps the clock. Returns the gap
 * credited in ms (0 when none).
 *
 * @example
 * const creditedMs = await creditOutage(db, 10_000);
 */
export async function creditOutage(q: Queryable, thresholdMs: number): Promise<number> {
  const r = await q.query<{ credited: number | string }>(CLOCK_SQL, [thresholdMs]);
  return Math.round(Number(r.rows[0]?.credited ?? 0));
}

/**
 * {@link creditOutage}, and in the same statement (one round trip) which of `due`'s conditions
 * hold: SQL boolean expressions by name, their placeholders from `$2` (`params`). The sweep asks
 * this way whether any of its steps has a row to take, and runs only those.
 *
 * @example
 * const { credited, due } = await creditOutageAndProbe(db, 10_000, { offers: 'exists (…)' }, []);
 */
export async function creditOutageAndProbe<K extends string>(
  q: Queryable,
  thresholdMs: number,
  due: Record<K, string>,
  params: unknown[],
): Promise<{ credited: number; due: Record<K, boolean> }> {
  const names = Object.keys(due) as K[];
  const extra = names.map((k) => `,\n  coalesce(${due[k]}, false) as "${k}"`).join('');
  const r = await q.query<Record<string, unknown>>(clockSql(extra), [thresholdMs, ...params]);
  const row = r.rows[0] ?? {};
  const out = {} as Record<K, boolean>;
  // Anything but a boolean false runs the step: the safe side.
  for (const k of names) out[k] = row[k] !== false;
  return { credited: Math.round(Number(row.credited ?? 0)), due: out };
}
