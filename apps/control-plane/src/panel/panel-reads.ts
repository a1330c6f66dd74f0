import { runStatusSchema } from '@runt/protocol';
import type { Database } from '@runt/sql';

/**
 * Read-only queries the panel needs beyond the stores' (it never writes run or fleet state;
 * writes go through the same store calls the JSON API makes).
 */

/** Runs holding a slot (offered, accepted, running) per workstation. */
export async function activeRunsByWorkstation(db: Database): Promise<Map<string, number>> {
  const r = await db.query<{ workstation_id: string; n: number | string }>(
    `select workstation_id, count(*) as n from runs where status in ('offered', 'accepted', 'running') and workstation_id is not null group by workstation_id`,
  );
  return new Map(r.rows.map((x) => [x.workstation_id, Number(x.n)]));
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
 * count bounded by `cap` (a value above it means "more than cap"). Served by
 * `runs_status_position_idx`, `runs_workstation_status_idx` and `runs_runtime_status_idx`.
 */
export async function runCountsByStatus(
  db: Database,
  filter: { workstation_id?: string; runtime?: string },
  cap = COUNT_CAP,
): Promise<Map<string, number>> {
  const params: unknown[] = [runStatusSchema.options, cap + 1];
  const where = ['r.status = s.status'];
  if (filter.workstation_id) where.push(`r.workstation_id = $${params.push(filter.workstation_id)}`);
  if (filter.runtime) where.push(`r.runtime = $${params.push(filter.runtime)}`);
  const r = await db.query<{ status: string; n: number | string }>(
    `select s.status, (select count(*) from (select 1 from runs r where ${where.join(' and ')} limit $2) b) as n
       from unnest($1::text[]) as s(status)`,
    params,
  );
  return new Map(r.rows.filter((x) => Number(x.n) > 0).map((x) => [x.status, Number(x.n)]));
}

/**
 * Runtimes runs were submitted with (for the filter's choices): a skip scan over
 * `runs_runtime_status_idx`, one index probe per distinct runtime (at most 100), not a table read.
 */
export async function knownRuntimes(db: Database): Promise<string[]> {
  const r = await db.query<{ runtime: string }>(
    `with recursive t(runtime, n) as (
       (select runtime, 1 from runs order by runtime limit 1)
       union all
       select (select r.runtime from runs r where r.runtime > t.runtime order by r.runtime limit 1), t.n + 1
         from t where t.runtime is not null and t.n < 100
     )
     select runtime from t where runtime is not null`,
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
