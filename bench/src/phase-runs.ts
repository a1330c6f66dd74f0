/**
 * How the bench counts a runt phase's finished runs while it waits for them (`RuntSystem.end`).
 * The count runs on runt's own database — on Postgres in a backend the bench meters as runt's
 * "db", on PGlite in the control plane's thread — so whatever it reads is charged to runt's
 * CPU per run, and no peer pays for its own completion check.
 *
 * A phase is marked by the runs' position sequence before its first submit
 * ({@link PHASE_MARK_SQL}): its runs are those with a higher `position` (the bench submits
 * nothing else, and every earlier phase's submits were answered before). Its finished runs are
 * then a range of `runs_status_position_idx` (ended runs by status and position) per terminal
 * status. The count by `created_at >= <phase start>` it replaces read that index's every entry
 * — every run any earlier phase had finished, and each entry's heap tuple — to keep this
 * phase's: in the burst-batch after a 10,000-run drain, twice what it counts (2.3–2.4 buffer
 * hits per run against 0.9–1.6 in the drain, pg_stat_statements on a private server, 2026-12-02).
 */

/** The statuses a run ends in (the bench's "finished"). */
export const TERMINAL_SQL = `('completed','failed','cancelled','blocked')`;

/** The last position handed out so far (`runs_position_seq`): `mark`, text (a bigint). */
export const PHASE_MARK_SQL = `select (case when is_called then last_value else last_value - 1 end)::text as mark from runs_position_seq`;

/** `n`: the runs after position `$1` (a {@link PHASE_MARK_SQL} mark) that have ended. */
export const FINISHED_SINCE_SQL = `select count(*)::int as n from runs where status in ${TERMINAL_SQL} and position > $1::bigint`;
