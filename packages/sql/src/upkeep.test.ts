import { describe, expect, it } from 'vitest';
import { openPglite } from './pglite.js';
import type { UpkeepDone } from './upkeep.js';

/** The table's counters and how often it was vacuumed and analysed, as PGlite's statistics have them. */
async function counters(db: Awaited<ReturnType<typeof openPglite>>) {
  await db.query('select pg_stat_force_next_flush()');
  const r = await db.query<{ dead: number; vacuums: number; analyzes: number; reltuples: number }>(
    `select s.n_dead_tup::int as dead, s.vacuum_count::int as vacuums, s.analyze_count::int as analyzes, c.reltuples::int as reltuples
       from pg_stat_user_tables s join pg_class c on c.oid = s.relid where s.relname = 'jobs'`,
  );
  return r.rows[0]!;
}

// Generous: a loaded machine (2 cores shared by several test runs) takes seconds per statement.
const until = async (done: () => boolean | Promise<boolean>, ms = 30_000) => {
  const end = Date.now() + ms;
  while (!(await done()) && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
};

/**
 * PGlite whose upkeep looks after every statement with no share limit (each upkeep it does pushed
 * to `ran`), holding an empty `jobs` table and its (status, pos) index.
 */
async function jobsDatabase(ran: UpkeepDone[]) {
  const db = await openPglite({
    upkeep: { checkIntervalMs: 0, maxShare: 1, onUpkeep: (d) => ran.push(d) },
  });
  try {
    await db.query(`create table jobs (id int primary key, status text not null, pos int not null)`);
    await db.query(`create index jobs_status_pos on jobs (status, pos)`);
  } catch (e) {
    await db.close();
    throw e;
  }
  return db;
}

describe('PGlite vacuums and analyses a table whose rows changed (no autovacuum there)', () => {
  it('vacuums and analyses a queue table once its dead rows pass the threshold, between statements', async () => {
    const ran: UpkeepDone[] = [];
    const db = await jobsDatabase(ran);
    try {
      await db.query(`insert into jobs select g, 'queued', g from generate_series(1, 2000) g`);
      // The insert's own upkeep (2,000 rows inserted: past 1,000 + 0.2 × rows) done first.
      await until(async () => {
        await db.query('select pg_stat_force_next_flush()');
        const r = await db.query<{ pending: number }>(
          `select (n_ins_since_vacuum + n_mod_since_analyze)::int as pending from pg_stat_user_tables where relname = 'jobs'`,
        );
        return r.rows[0]?.pending === 0;
      });
      ran.length = 0;
      // 40 dead rows: under 50 + 0.2 × 2,000, left alone.
      await db.query(`update jobs set status = 'done' where id <= 40`);
      for (let i = 0; i < 5; i++) await db.query('select 1');
      await until(() => false, 100);
      const vacuums = ran.filter((d) => d.table === 'public.jobs' && d.action !== 'analyze');
      expect(vacuums, JSON.stringify(ran)).toEqual([]);

      // Each job through two status changes: 4,000 dead row versions in the heap and the index.
      await db.query(`update jobs set status = 'running'`);
      await db.query(`update jobs set status = 'done'`);
      await db.query('select 1');
      await until(() => ran.some((d) => d.table === 'public.jobs' && d.deadRows >= 2000));

      // Looked at after each statement here (checkIntervalMs 0): after the first update or the second.
      const vacuum = ran.find((d) => d.table === 'public.jobs' && d.deadRows >= 2000);
      expect(vacuum).toMatchObject({ action: 'vacuum analyze', rows: 2000 });
      // Every statement (these reads too) lets the next look in, until nothing is left dead.
      await until(async () => (await counters(db)).dead === 0);
      const c = await counters(db);
      expect(c.dead).toBe(0);
      expect(c.vacuums).toBeGreaterThanOrEqual(2);
      expect(c.analyzes).toBeGreaterThanOrEqual(2);
      expect(c.reltuples).toBe(2000);
    } finally {
      await db.close();
    }
  });

  it('takes at most its share of the connection, and nothing after close', async () => {
    let now = 0;
    const looks: number[] = [];
    const { TableUpkeep } = await import('./upkeep.js');
    const u = new TableUpkeep(
      async (fn) =>
        fn({
          query: async <T>(text: string) => {
            if (text.includes('pg_stat_user_tables')) {
              looks.push(now);
              now += 30; // the look took 30 ms
            }
            return { rows: [] as T[] };
          },
        }),
      { checkIntervalMs: 1_000, maxShare: 0.01, now: () => now },
    );
    u.maybe(); // not due yet: checkIntervalMs after start
    await until(() => false, 10);
    expect(looks).toEqual([]);
    now = 1_000;
    u.maybe();
    u.maybe(); // one look at a time
    await until(() => looks.length > 0 && false, 10);
    expect(looks).toEqual([1_000]);
    // 30 ms at a share of 1 %: the next look 3 s after the last one ended.
    now = 3_000;
    u.maybe();
    await until(() => false, 10);
    expect(looks).toEqual([1_000]);
    now = 4_030;
    u.maybe();
    await until(() => false, 10);
    expect(looks).toEqual([1_000, 4_030]);
    await u.close();
    now = 100_000;
    u.maybe();
    await until(() => false, 10);
    expect(looks).toEqual([1_000, 4_030]);
  });

  it('a statement prepared before the ANALYZE is planned again with the table as it is now', async () => {
    const ran: UpkeepDone[] = [];
    const db = await jobsDatabase(ran);
    try {
      // Prepared (the plan cache: sent twice) while the table was empty; then 5,000 rows
      // arrive of which 4,000 stay queued.
      const count = `select count(*)::int as n from jobs where status = 'queued'`;
      expect((await db.query(count)).rows).toEqual([{ n: 0 }]);
      expect((await db.query(count)).rows).toEqual([{ n: 0 }]);
      await db.query(`insert into jobs select g, 'queued', g from generate_series(1, 5000) g`);
      await db.query(`update jobs set status = 'done' where id <= 1000`);
      await db.query('select 1');
      await until(() =>
        ran.some((d) => d.table === 'public.jobs' && d.action !== 'vacuum' && d.rows >= 5000),
      );

      // The prepared statement's plan, as its next EXECUTE runs it: planned again after the
      // ANALYZE, it expects the 4,000 queued rows (without statistics: 0.5 % of the table, 25).
      const name = (
        await db.query<{ name: string }>(
          `select name from pg_prepared_statements where statement like '%count(*)%'`,
        )
      ).rows[0]!.name;
      const plan = await db.query<{ 'QUERY PLAN': [{ Plan: { Plans: [{ 'Plan Rows': number }] } }] }>(
        `explain (format json) execute ${name}`,
      );
      expect(plan.rows[0]!['QUERY PLAN'][0].Plan.Plans[0]['Plan Rows']).toBeGreaterThan(3000);
      expect((await db.query(count)).rows).toEqual([{ n: 4000 }]);
    } finally {
      await db.close();
    }
  });
});
