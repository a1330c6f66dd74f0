import { controlPlaneMigrations } from '@runt/control-plane';
import { migrate, openPglite, openPostgres, type Database } from '@runt/sql';
import { describe, expect, it } from 'vitest';
import { createBenchDatabase } from '../src/index.js';
import { FINISHED_SINCE_SQL, PHASE_MARK_SQL } from '../src/phase-runs.js';

// Rows of `runs` a statement's plan read: its largest scan of runs or of one of runs' indexes,
// counting the rows a filter dropped (a sequential scan's `Actual Rows` are only those it kept).
async function rowsRead(db: Database, sql: string, params: unknown[]): Promise<number> {
  const r = await db.query<{ 'QUERY PLAN': unknown }>(`explain (analyze, format json) ${sql}`, params);
  const raw = r.rows[0]!['QUERY PLAN'];
  const plan = (typeof raw === 'string' ? JSON.parse(raw) : raw) as Array<{ Plan: PlanNode }>;
  interface PlanNode {
    'Node Type': string;
    'Relation Name'?: string;
    'Index Name'?: string;
    'Actual Rows': number;
    'Actual Loops': number;
    'Rows Removed by Filter'?: number;
    Plans?: PlanNode[];
  }
  let read = 0;
  const walk = (n: PlanNode) => {
    // The scans that visit runs: the heap's, or an index's of runs (a bitmap's index scan carries no relation name).
    if (n['Relation Name'] === 'runs' || n['Index Name']?.startsWith('runs_'))
      read = Math.max(read, (n['Actual Rows'] + (n['Rows Removed by Filter'] ?? 0)) * n['Actual Loops']);
    n.Plans?.forEach(walk);
  };
  walk(plan[0]!.Plan);
  return read;
}

const insertRuns = (db: Database, n: number, status: string) =>
  db.query(
    `insert into runs (id, status, runtime, command, finished_at)
     select 'run_' || md5(random()::text || g), $2, 'fake', '[]', case when $2 = 'queued' then null else now() end
       from generate_series(1, $1::int) g`,
    [n, status],
  );

describe("the bench's count of a phase's finished runs", () => {
  for (const backend of ['pglite', 'postgres'] as const) {
    it(`counts this phase's ended runs and reads no earlier phase's, on ${backend}`, async () => {
      const server = backend === 'postgres' ? await createBenchDatabase('phase_runs') : undefined;
      const db = server ? await openPostgres({ url: server.url }) : await openPglite();
      try {
        await migrate(db, controlPlaneMigrations);
        // An earlier phase: 5,000 runs, all ended (the state after a drain).
        await insertRuns(db, 5000, 'completed');
        const mark = (await db.query<{ mark: string }>(PHASE_MARK_SQL)).rows[0]!.mark;
        expect(Number(mark)).toBe(5000);
        // This phase: 30 runs, 12 of them ended (each status change a new row version, as runt's).
        await insertRuns(db, 30, 'queued');
        await db.query(
          `update runs set status = 'accepted' where id in (select id from runs where status = 'queued' order by position limit 12)`,
        );
        await db.query(
          `update runs set status = case when position % 2 = 0 then 'completed' else 'failed' end, finished_at = now() where status = 'accepted'`,
        );
        const n = (await db.query<{ n: number }>(FINISHED_SINCE_SQL, [mark])).rows[0]!.n;
        expect(n).toBe(12);
        // What it reads is this phase's (12 ended runs), not the 5,000 before them.
        expect(await rowsRead(db, FINISHED_SINCE_SQL, [mark])).toBeLessThanOrEqual(30);
      } finally {
        await db.close();
        await server?.drop();
      }
    });
  }
});
