import type { Queryable } from '@runt/sql';
import type { PendingReason, Run, Workstation } from '@runt/protocol';
import { labelsMatch, slotsOf } from './placement.js';
import type { WorkstationStore } from '../stores/workstation-store.js';

/** A workstation as placement sees it: what it offers and what its live runs already hold. */
export interface FleetEntry {
  workstation: Workstation;
  usedRuns: number;
  usedCpus: number;
  usedMemory: number;
}

const COMMITTED_SQL = `
select workstation_id, count(*) as runs, coalesce(sum(cpus), 0) as cpus, coalesce(sum(memory_bytes), 0) as memory
from runs where workstation_id = any($1::text[]) and status in ('offered', 'accepted', 'running') group by workstation_id`;

const describeLabels = (labels: Record<string, string>): string =>
  Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');

const plural = (n: number, one: string, many: string): string => `${n} ${n === 1 ? one : many}`;

/**
 * Why a queued run is not placed, from the fleet as it stands: the same filters the scheduler
 * applies, in the order a user fixes them (runtime, then labels or the pinned workstation, then
 * online, then room); a retry waiting out its backoff says so first. `null` when the run is not queued or some workstation could take it now.
 *
 * @example
 * pendingReason(run, fleet); // { code: 'no-runtime', message: 'no workstation offers runtime "nosuch"' }
 */
export function pendingReason(
  run: Run,
  fleet: FleetEntry[],
  now = Date.now(),
  /** The runtimes the live fleet offers, when `fleet` holds only part of it (default: `fleet`'s). */
  fleetRuntimes?: readonly string[],
): PendingReason | null {
  if (run.status !== 'queued') return null;
  if (run.not_before && Date.parse(run.not_before) > now) {
    const inS = Math.ceil((Date.parse(run.not_before) - now) / 1000);
    return {
      code: 'retry-backoff',
      message: `attempt ${run.attempt} of ${run.max_attempts} is a retry, placed after its backoff (in ${inS}s, ${run.not_before})`,
    };
  }
  const live = fleet.filter((f) => f.workstation.status !== 'revoked');
  const withRuntime = live.filter((f) => f.workstation.runtimes.includes(run.runtime));
  if (withRuntime.length === 0) {
    const offered = fleetRuntimes
      ? [...fleetRuntimes]
      : [...new Set(live.flatMap((f) => f.workstation.runtimes))].sort();
    const have =
      offered.length > 0 ? ` (the fleet offers ${offered.join(', ')})` : ' (no workstation is registered)';
    return { code: 'no-runtime', message: `no workstation offers runtime "${run.runtime}"${have}` };
  }
  const pinned = run.placement.workstation_id;
  const wanted = run.placement.labels ?? {};
  const matching = withRuntime.filter(
    (f) => (!pinned || f.workstation.id === pinned) && labelsMatch(f.workstation.labels, wanted),
  );
  if (matching.length === 0) {
    const what = [
      pinned ? `is workstation ${pinned}` : '',
      Object.keys(wanted).length > 0 ? `matches labels ${describeLabels(wanted)}` : '',
    ]
      .filter(Boolean)
      .join(' and ');
    return { code: 'no-label-match', message: `no workstation with runtime "${run.runtime}" ${what}` };
  }
  const online = matching.filter((f) => f.workstation.status === 'online' && f.workstation.listening);
  if (online.length === 0) {
    return {
      code: 'offline',
      message: `${matching.length === 1 ? 'the matching workstation is' : `all ${matching.length} matching workstations are`} offline or draining`,
    };
  }
  const fits = online.some((f) => {
    const w = f.workstation;
    if (f.usedRuns >= slotsOf(w)) return false;
    if (
      run.resources.cpus !== undefined &&
      w.cpu_count !== null &&
      run.resources.cpus > w.cpu_count - f.usedCpus
    )
      return false;
    if (
      run.resources.memory_bytes !== undefined &&
      w.memory_bytes !== null &&
      run.resources.memory_bytes > w.memory_bytes - f.usedMemory
    )
      return false;
    return true;
  });
  if (fits) return null;
  const runs = online.reduce((n, f) => n + f.usedRuns, 0);
  return {
    code: 'full',
    message: `${online.length === 1 ? 'the matching workstation is' : `all ${online.length} matching workstations are`} full (${plural(runs, 'run', 'runs')} placed; no free slot, cpus or memory)`,
  };
}

/**
 * Adds `pending_reason` to runs as an operator reads them. Only when a run is queued, and then
 * only the workstations offering a queued run's runtime (with what their live runs hold, for
 * those workstations only) are read; the runtimes the rest of the fleet offers only when some
 * queued run's runtime is on no live workstation. Reading running or finished runs costs
 * nothing more, and a queued run's reason costs the same with 10 or 10,000 workstations that
 * cannot take it.
 *
 * @example
 * const runs = await new PendingReasons(db, workstations).annotate(page.runs);
 */
export class PendingReasons {
  constructor(
    private readonly db: Queryable,
    private readonly workstations: Pick<WorkstationStore, 'list' | 'runtimesOffered'>,
  ) {}

  async annotate(runs: Run[]): Promise<Run[]> {
    const queued = runs.filter((r) => r.status === 'queued');
    if (queued.length === 0) return runs.map((r) => ({ ...r, pending_reason: null }));
    const fleet = await this.fleet([...new Set(queued.map((r) => r.runtime))]);
    const live = new Set(
      fleet.filter((f) => f.workstation.status !== 'revoked').flatMap((f) => f.workstation.runtimes),
    );
    const offered = queued.some((r) => !live.has(r.runtime))
      ? await this.workstations.runtimesOffered()
      : undefined;
    return runs.map((r) => ({ ...r, pending_reason: pendingReason(r, fleet, Date.now(), offered) }));
  }

  /** The workstations offering one of `runtimes` (all of them without), with what their live runs hold. */
  async fleet(runtimes?: readonly string[]): Promise<FleetEntry[]> {
    const workstations = await this.workstations.list(runtimes ? { runtimes } : {});
    if (workstations.length === 0) return [];
    const committed = await this.db.query<{
      workstation_id: string;
      runs: number | string;
      cpus: number | string;
      memory: number | string;
    }>(COMMITTED_SQL, [workstations.map((w) => w.id)]);
    const used = new Map(committed.rows.map((r) => [r.workstation_id, r]));
    return workstations.map((workstation) => {
      const u = used.get(workstation.id);
      return {
        workstation,
        usedRuns: Number(u?.runs ?? 0),
        usedCpus: Number(u?.cpus ?? 0),
        usedMemory: Number(u?.memory ?? 0),
      };
    });
  }
}
