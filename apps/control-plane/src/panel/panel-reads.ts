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

/** Runs per status under the same workstation/runtime filters as the list. */
export async function runCountsByStatus(
  db: Database,
  filter: { workstation_id?: string; runtime?: string },
): Promise<Map<string, number>> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (filter.workstation_id) where.push(`workstation_id = $${params.push(filter.workstation_id)}`);
  if (filter.runtime) where.push(`runtime = $${params.push(filter.runtime)}`);
  const r = await db.query<{ status: string; n: number | string }>(
    `select status, count(*) as n from runs ${where.length ? `where ${where.join(' and ')}` : ''} group by status`,
    params,
  );
  return new Map(r.rows.map((x) => [x.status, Number(x.n)]));
}

/** Runtimes runs were submitted with (for the filter's choices). */
export async function knownRuntimes(db: Database): Promise<string[]> {
  const r = await db.query<{ runtime: string }>(
    'select distinct runtime from runs order by runtime limit 100',
  );
  return r.rows.map((x) => x.runtime);
}
