// What the foreign key of `run_events` cost per event row (issue 9, docs/benchmarks.md): the
// event write of a finish — 25 runs updated, two events each taken from the updated rows, one
// statement — into a table with the key and into one without, alternated, CPU measured where
// the statement runs (PGlite: this process; Postgres: its server process, from /proc).
//
//   node dist/event-fk-bench.js            (BENCH_FK_ROUNDS=8, BENCH_FK_STATEMENTS=80)
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { openPglite } from '@runt/sql';
import { createTestDatabase } from '@runt/sql/testing';
import { loadAverage } from './stats.js';

const ROUNDS = Number(process.env.BENCH_FK_ROUNDS ?? 8);
const STATEMENTS = Number(process.env.BENCH_FK_STATEMENTS ?? 80);
const RUNS_PER_STATEMENT = 25;

const SCHEMA = `
create table fk_runs (id text primary key, next_event_seq bigint not null default 1, pad text);
create table ev_with_fk (run_id text not null references fk_runs(id) on delete cascade, seq bigint not null, type text not null,
  payload jsonb not null, at timestamptz not null default now(), primary key (run_id, seq));
create table ev_without_fk (run_id text not null, seq bigint not null, type text not null,
  payload jsonb not null, at timestamptz not null default now(), primary key (run_id, seq));
insert into fk_runs (id, pad) select 'run_' || g, repeat('x', 300) from generate_series(1, ${(ROUNDS * STATEMENTS + 20) * RUNS_PER_STATEMENT}) g;`;

const write = (table: string, first: number) => `
with u as (update fk_runs r set next_event_seq = r.next_event_seq + 2
  where r.id in (select 'run_' || g from generate_series(${first}, ${first + RUNS_PER_STATEMENT - 1}) g) returning r.id, r.next_event_seq)
insert into ${table} (run_id, seq, type, payload)
select u.id, u.next_event_seq - 2, 'log', '{"stream":"stdout","data":"hi\\n"}'::jsonb from u
union all select u.id, u.next_event_seq - 1, 'terminal_status', '{"status":"completed","exit_code":0}'::jsonb from u`;

/** CPU seconds of a process so far (utime + stime from /proc). */
function procCpu(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function measure(
  backend: string,
  run: (sql: string) => Promise<unknown>,
  cpu: () => number,
): Promise<void> {
  const perRow: Record<string, number[]> = { ev_with_fk: [], ev_without_fk: [] };
  let next = 1;
  // warm-up (catalog caches, plans, WASM compilation), not counted
  for (const table of ['ev_with_fk', 'ev_without_fk'])
    for (let s = 0; s < 10; s++, next += RUNS_PER_STATEMENT) await run(write(table, next));
  for (let r = 0; r < ROUNDS; r++) {
    const table = r % 2 === 0 ? 'ev_with_fk' : 'ev_without_fk';
    const c0 = cpu();
    for (let s = 0; s < STATEMENTS; s++, next += RUNS_PER_STATEMENT) await run(write(table, next));
    perRow[table]!.push(((cpu() - c0) * 1e6) / (STATEMENTS * RUNS_PER_STATEMENT * 2));
  }
  const f = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(', ');
  console.log(
    `${backend.padEnd(8)} µs CPU per event row (statement included): with the key ${f(perRow.ev_with_fk!)}; without ${f(perRow.ev_without_fk!)}  load ${loadAverage()}`,
  );
}

const lite = await openPglite();
for (const stmt of SCHEMA.split(';').filter((s) => s.trim())) await lite.query(stmt);
await measure(
  'pglite',
  (sql) => lite.query(sql),
  () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  },
);
await lite.close();

const t = await createTestDatabase('postgres');
const c = new pg.Client({ connectionString: t.url });
await c.connect();
try {
  await c.query(SCHEMA);
  await c.query('vacuum analyze fk_runs');
  const pid = (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  await measure(
    'postgres',
    (sql) => c.query(sql),
    () => procCpu(pid),
  );
} finally {
  await c.end();
  await t.dispose();
}
