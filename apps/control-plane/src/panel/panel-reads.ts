import type { Workstation } from '@runt/protocol';
import type { Database } from '@runt/sql';
import { listedStatuses } from '../runs/run-store.js';
import { WORKSTATION_STATUS_SQL } from '../stores/workstation-store.js';

// Runs holding a workstation's slot: the only ones `runs_workstation_status_idx` holds, and the
// ones `runs_runtime_status_idx` leaves out (migration cp_0105).
const SLOT_STATUSES = `('offered', 'accepted', 'running')`;
const NOT_IN_SLOT = `status not in ${SLOT_STATUSES}`;

/**
 * Read-only queries the panel needs beyond the stores' (it never writes run or fleet state;
 * writes go through the same store calls the JSON API makes).
 */

/** What the fleet page shows of a workstation. */
export type FleetRow = Pick<
  Workstation,
  | 'id'
  | 'display_name'
  | 'status'
  | 'runtimes'
  | 'labels'
  | 'max_runs'
  | 'prefetch'
  | 'cpu_count'
  | 'memory_bytes'
  | 'agent_version'
  | 'last_seen_at'
> & { in_use: number };

/**
 * The fleet page in one statement: every workstation (oldest first, status derived as the
 * store derives it), only the columns the page shows, with its runs holding a slot (offered,
 * accepted, running) counted once for the whole fleet in one grouped read of the runs holding a
 * slot (`runs_workstation_status_idx`, which holds only those), not per workstation.
 */
export async function fleetWithRunsInUse(db: Database): Promise<FleetRow[]> {
  const r = await db.query<
    Omit<FleetRow, 'memory_bytes' | 'last_seen_at' | 'in_use'> & {
      memory_bytes: number | string | null;
      last_seen_at: Date | string | null;
      in_use: number | string | null;
    }
  >(
    `select w.id, w.display_name, ${WORKSTATION_STATUS_SQL} as status, w.runtimes, w.labels, w.max_runs, w.prefetch, w.cpu_count,
            w.memory_bytes, w.agent_version, w.last_seen_at, a.n as in_use
       from workstations w
       left join (select workstation_id, count(*) as n from runs
                   where status in ('offered', 'accepted', 'running') and workstation_id is not null
                   group by workstation_id) a on a.workstation_id = w.id
      order by w.created_at, w.id`,
  );
  return r.rows.map((x) => ({
    ...x,
    memory_bytes: x.memory_bytes === null ? null : Number(x.memory_bytes),
    last_seen_at: x.last_seen_at === null ? null : new Date(x.last_seen_at).toISOString(),
    in_use: Number(x.in_use ?? 0),
  }));
}

/** What the submit form offers: the workstations (not revoked) to pin to, and every runtime the fleet registered. */
export async function submitChoices(
  db: Database,
): Promise<{ workstations: Array<Pick<Workstation, 'id' | 'display_name' | 'status'>>; runtimes: string[] }> {
  const r = await db.query<Pick<Workstation, 'id' | 'display_name' | 'status' | 'runtimes'>>(
    `select w.id, w.display_name, ${WORKSTATION_STATUS_SQL} as status, w.runtimes from workstations w order by w.created_at, w.id`,
  );
  return {
    workstations: r.rows
      .filter((w) => w.status !== 'revoked')
      .map(({ id, display_name, status }) => ({ id, display_name, status })),
    runtimes: [...new Set(r.rows.flatMap((w) => w.runtimes))],
  };
}

/** Live (not revoked) credential ids of a workstation: what revoking it revokes. */
export async function liveCredentialsOf(db: Database, workstationId: string): Promise<string[]> {
  const r = await db.query<{ id: string }>(
    'select id from credentials where workstation_id = $1 and revoked_at is null order by created_at',
    [workstationId],
  );
  return r.rows.map((x) => x.id);
}

/**
 * Counts per status stop at this many: each status reads at most `COUNT_CAP + 1` index entries,
 * so the runs page costs the same with 10 or 10 million runs (a capped count shows as `1000+`).
 */
export const COUNT_CAP = 1000;

/**
 * Runs per status under the same workstation/runtime filters as the list, one statement, each
 * count bounded by `cap` (a value above it means "more than cap"; `null`: exact, for `/metrics`). Each status is counted
 * through the index that holds it (see `listIdsSql`: its status is a literal, so a prepared
 * plan can use the partial index): `runs_queued_idx`, `runs_workstation_status_idx` (runs
 * holding a slot), `runs_status_position_idx`, `runs_workstation_ended_idx` or
 * `runs_runtime_status_idx` (ended runs). Each reads its index in the list's order (newest
 * first): without the order Postgres' planner took a status most runs have for a sequential
 * scan stopping at the cap, which reads the table from its oldest page up to wherever the
 * first `cap` such runs are.
 */
export async function runCountsByStatus(
  db: Database,
  filter: { workstation_id?: string; runtime?: string },
  cap: number | null = COUNT_CAP,
): Promise<Map<string, number>> {
  // `limit null` is no limit: an exact count (`/metrics`), through the same index per status.
  const params: unknown[] = [cap === null ? null : cap + 1];
  const where: string[] = [];
  if (filter.workstation_id) where.push(`r.workstation_id = $${params.push(filter.workstation_id)}`);
  if (filter.runtime) where.push(`r.runtime = $${params.push(filter.runtime)}`);
  const r = await db.query<{ status: string; n: number | string }>(
    listedStatuses(filter)
      .map(
        (s) =>
          `select '${s}' as status, (select count(*) from (select 1 from runs r where r.status = '${s}'${where.map((w) => ` and ${w}`).join('')} order by r.position desc limit $1) b) as n`,
      )
      .join(' union all '),
    params,
  );
  return new Map(r.rows.filter((x) => Number(x.n) > 0).map((x) => [x.status, Number(x.n)]));
}

/**
 * Runtimes runs were submitted with (for the filter's choices): a skip scan over
 * `runs_runtime_status_idx` (queued and ended runs), one index probe per distinct runtime (at
 * most 100), and the runtimes of the runs holding a slot (`runs_workstation_status_idx`, a
 * few per workstation), not a table read.
 */
export async function knownRuntimes(db: Database): Promise<string[]> {
  const r = await db.query<{ runtime: string }>(
    `with recursive t(runtime, n) as (
       (select runtime, 1 from runs where ${NOT_IN_SLOT} order by runtime limit 1)
       union all
       select (select r.runtime from runs r where r.runtime > t.runtime and ${NOT_IN_SLOT} order by r.runtime limit 1), t.n + 1
         from t where t.runtime is not null and t.n < 100
     )
     select runtime from t where runtime is not null
     union
     select runtime from runs where status in ${SLOT_STATUSES}
     order by runtime limit 100`,
  );
  return r.rows.map((x) => x.runtime);
}

/** Display names of the given workstations (the listed runs' ones, not the whole fleet). */
export async function workstationNames(db: Database, ids: string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const r = await db.query<{ id: string; display_name: string }>(
    'select id, display_name from workstations where id = any($1::text[])',
    [[...new Set(ids)]],
  );
  return new Map(r.rows.map((x) => [x.id, x.display_name]));
}

/** The id of the (first paired) workstation with this display name. */
export async function workstationIdByName(db: Database, name: string): Promise<string | undefined> {
  const r = await db.query<{ id: string }>(
    'select id from workstations where display_name = $1 order by created_at, id limit 1',
    [name],
  );
  return r.rows[0]?.id;
}

/** The fleet's display names and runtimes (the filters' choices), without reading whole rows. */
export async function fleetChoices(db: Database): Promise<{ names: string[]; runtimes: string[] }> {
  const r = await db.query<{ names: string[] | null; runtimes: string[] | null }>(
    `select (select array_agg(distinct display_name order by display_name) from workstations) as names,
            (select array_agg(distinct x order by x) from workstations, jsonb_array_elements_text(runtimes) as x) as runtimes`,
  );
  return { names: r.rows[0]?.names ?? [], runtimes: r.rows[0]?.runtimes ?? [] };
}
