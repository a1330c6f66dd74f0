import { WORKSTATION_OFFLINE_AFTER_SECONDS } from '@runt/protocol';
import type { RunRow } from './run-row.js';
import { statusesSql } from './state-machine.js';

// The placement rules, in one home: which workstations are candidates, which of them a run
// fits, and which one it goes to. A scheduling pass reads the candidates in SQL (`USED_SQL`,
// `PLACEABLE_SQL`) and places a page of runs in memory (`pick`: each placement changes the
// free slots the next run sees); a submit that places its own run does it in SQL, in one
// statement (`FITS_SQL`, `PREFERENCE_SQL`). Both forms of a rule live here, side by side: change
// one, change its twin (`test/placement.test.ts` runs both on the same fleets).

/** A candidate workstation as a page reads it, with its used capacity. */
export interface Candidate {
  id: string;
  cpu_count: number | null;
  memory_bytes: number | string | null;
  slots: number;
  /** The runs its agent takes ahead of a free slot (`w.prefetch`): room it has, but not to start in. */
  prefetch: number;
  runtimes: string[];
  labels: Record<string, string>;
  used_runs: number | string;
  used_cpus: number | string;
  used_memory: number | string;
}

/** A candidate's free capacity while a page is placed. */
export interface Slot {
  id: string;
  runtimes: Set<string>;
  labels: Record<string, string>;
  freeRuns: number;
  /** Of `freeRuns`, those that start at once (not waiting for a slot as prefetched runs). */
  freeStarts: number;
  freeCpus: number | null;
  freeMemory: number | null;
}

/** Workstation `w`'s slots, the runs it starts at once: `max_runs`, else its `cpu_count`, else 1. */
const RUN_SLOTS_SQL = `coalesce(w.max_runs, w.cpu_count, 1)`;

/**
 * Workstation `w`'s capacity in runs (`Candidate.slots`): its slots — `max_runs`, else its
 * `cpu_count`, else 1 — plus the runs its agent takes ahead of a free slot (`prefetch`, 0 unless
 * the agent says; they wait on the agent, leased, for one of its slots).
 */
export const SLOTS_SQL = `${RUN_SLOTS_SQL} + w.prefetch`;

/** Of `w`'s free capacity (with `u`, {@link USED_SQL}), the runs that would start at once: free slots, not prefetch room. */
const FREE_STARTS_SQL = `greatest(${RUN_SLOTS_SQL} - u.used_runs, 0)`;

/** {@link SLOTS_SQL} of a workstation in memory (the pending reason's, and the link's request budget). */
export function slotsOf(w: { max_runs: number | null; cpu_count: number | null; prefetch: number }): number {
  return (w.max_runs ?? w.cpu_count ?? 1) + w.prefetch;
}

/**
 * Run `r` may be offered now: in a status the `offer` transition leaves from (queued), and past
 * its `not_before` (a retry's backoff).
 */
export const OFFERABLE_NOW_SQL = `r.status in (${statusesSql('offer')}) and (r.not_before is null or r.not_before <= now())`;

/**
 * A workstation `w`'s committed capacity, as `u` (`used_runs`, `used_cpus`, `used_memory`),
 * from the runs table every time, so it is recomputed whenever a workstation (re)connects.
 */
export const USED_SQL = `cross join lateral (
  select count(*) as used_runs, coalesce(sum(r.cpus), 0) as used_cpus, coalesce(sum(r.memory_bytes), 0) as used_memory
  from runs r where r.workstation_id = w.id and r.status in ('offered', 'accepted', 'running')
) u`;

/**
 * `w` (with `u`, {@link USED_SQL}) is a candidate: online, listening, not draining, a live
 * credential, a free slot (`max_runs`, default `cpu_count`); linked to any replica or to none (an
 * agent that polls): the offer reaches a link held elsewhere through the relay.
 */
export const PLACEABLE_SQL = `w.listening and not w.draining and w.link_state <> 'dropped'
  and w.last_seen_at > now() - make_interval(secs => ${WORKSTATION_OFFLINE_AFTER_SECONDS})
  and exists (select 1 from credentials c where c.workstation_id = w.id and c.revoked_at is null)
  and u.used_runs < ${SLOTS_SQL}`;

/**
 * Run `x` fits candidate `w` (with `u`): its runtime, its pin, every label with the same
 * value, and enough free cpus and memory when both the run asks and the workstation reports
 * them. `pick`'s tests, in SQL.
 */
export const FITS_SQL = `w.runtimes ? x.runtime
     and (x.placement_workstation_id is null or w.id = x.placement_workstation_id)
     and w.labels @> x.placement_labels
     and (x.cpus is null or w.cpu_count is null or x.cpus <= w.cpu_count - u.used_cpus)
     and (x.memory_bytes is null or w.memory_bytes is null or x.memory_bytes <= w.memory_bytes - u.used_memory)`;

/**
 * Which fitting candidate a run goes to, as an `order by`: the most free slots where it would
 * start at once, then the most free capacity with prefetch room (a run taken ahead waits on its
 * agent for a slot: an idle workstation without prefetch beats a busy one with room in its
 * queue), then the fewest used, then the id. `pick`'s order: it takes the first best of
 * candidates read in `CANDIDATE_ORDER_SQL`.
 */
export const PREFERENCE_SQL = `${FREE_STARTS_SQL} desc, ${SLOTS_SQL} - u.used_runs desc, u.used_runs, w.id`;

/** The order a page reads its candidates in (`c`), which breaks `pick`'s ties as {@link PREFERENCE_SQL}. */
export const CANDIDATE_ORDER_SQL = `u.used_runs, w.id`;

export function toSlot(c: Candidate): Slot {
  const freeRuns = Number(c.slots) - Number(c.used_runs);
  return {
    id: c.id,
    runtimes: new Set(c.runtimes),
    labels: c.labels,
    freeRuns,
    freeStarts: Math.max(freeRuns - Number(c.prefetch), 0),
    freeCpus: c.cpu_count === null ? null : c.cpu_count - Number(c.used_cpus),
    freeMemory: c.memory_bytes === null ? null : Number(c.memory_bytes) - Number(c.used_memory),
  };
}

/**
 * The slot the run goes to, or undefined: of those it fits ({@link FITS_SQL}'s tests), the
 * first with the most free starts, then the most free runs ({@link PREFERENCE_SQL}, given slots
 * in {@link CANDIDATE_ORDER_SQL}). {@link take} it once placed.
 */
export function pick(slots: Slot[], run: RunRow): Slot | undefined {
  let best: Slot | undefined;
  for (const s of slots) {
    if (s.freeRuns <= 0 || !s.runtimes.has(run.runtime)) continue;
    if (run.placement_workstation_id && run.placement_workstation_id !== s.id) continue;
    if (!labelsMatch(s.labels, run.placement_labels)) continue;
    if (run.cpus !== null && s.freeCpus !== null && Number(run.cpus) > s.freeCpus) continue;
    if (run.memory_bytes !== null && s.freeMemory !== null && Number(run.memory_bytes) > s.freeMemory)
      continue;
    if (
      !best ||
      s.freeStarts > best.freeStarts ||
      (s.freeStarts === best.freeStarts && s.freeRuns > best.freeRuns)
    )
      best = s;
  }
  return best;
}

/** Slot `s`'s free capacity after `run` is placed on it, for the next {@link pick}. */
export function take(s: Slot, run: RunRow): void {
  s.freeRuns--;
  if (s.freeStarts > 0) s.freeStarts--;
  if (s.freeCpus !== null && run.cpus !== null) s.freeCpus -= Number(run.cpus);
  if (s.freeMemory !== null && run.memory_bytes !== null) s.freeMemory -= Number(run.memory_bytes);
}

/** Every label `want` names is in `have` with the same value. */
export function labelsMatch(have: Record<string, string>, want: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(want ?? {})) if (have[k] !== v) return false;
  return true;
}
