import type { Workstation } from '@runt/protocol';
import { sqlLiteral, type Database, type Queryable } from '@runt/sql';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMetrics } from '../src/metrics.js';
import { fleetWithRunsInUse, knownRuntimes, runCountsByStatus } from '../src/panel/panel-reads.js';
import { PendingReasons } from '../src/runs/pending-reason.js';
import { RunStore } from '../src/runs/run-store.js';
import { pageSql } from '../src/runs/scheduler.js';
import {
  claimedOffers,
  claimMany,
  expireQueued,
  finishMany,
  lockExpiredRuns,
  renewMany,
  reportEventsMany,
  startMany,
  timeOutOverdue,
  withdrawStaleOffers,
} from '../src/runs/transitions.js';
import { BundleStore } from '../src/stores/bundle-store.js';
import { migratedDatabase } from './scheduler-fixtures.js';

/**
 * Every status change of a run writes an entry into each index of `runs` whose predicate holds
 * (issue 9): the table keeps only the entries some read needs — runs holding a slot by
 * workstation, queued runs by position, queued and ended runs by runtime, ended runs by status
 * and by workstation (migration cp_0105) — and every read of `runs` still goes through an index
 * on a table of many runs, most of them ended.
 */
describe.each(TEST_BACKENDS)('the indexes of runs on %s', (backend) => {
  let t: TestDatabase;

  beforeAll(async () => {
    t = await migratedDatabase(backend);
    await fill(t.db);
  });
  afterAll(async () => {
    await t?.dispose();
  });

  it('has only the indexes some read needs', async () => {
    const r = await t.db.query<{ indexname: string; indexdef: string }>(
      `select indexname, indexdef from pg_indexes where tablename = 'runs' order by indexname`,
    );
    expect(r.rows.map((x) => x.indexname)).toEqual([
      'runs_idempotency_key_idx',
      'runs_offered_idx',
      'runs_pkey',
      'runs_queued_idx',
      'runs_runtime_status_idx',
      'runs_status_position_idx',
      'runs_workstation_ended_idx',
      'runs_workstation_status_idx',
    ]);
    // only the primary key holds every run
    expect(r.rows.filter((x) => !/ WHERE /i.test(x.indexdef)).map((x) => x.indexname)).toEqual(['runs_pkey']);
  });

  it('gives a claimed run 2 index entries, a finished one 4, a queued one 3', async () => {
    // the indexes whose predicate a run's row satisfies in each status
    expect(await entriesFor(t.db, 'accepted', 'ws_1')).toEqual(['runs_pkey', 'runs_workstation_status_idx']);
    expect(await entriesFor(t.db, 'completed', 'ws_1')).toEqual([
      'runs_pkey',
      'runs_runtime_status_idx',
      'runs_status_position_idx',
      'runs_workstation_ended_idx',
    ]);
    expect(await entriesFor(t.db, 'queued', null)).toEqual([
      'runs_pkey',
      'runs_queued_idx',
      'runs_runtime_status_idx',
    ]);
  });

  it('reads runs through an index: lists, counts, capacity, resends, sweeper', async () => {
    const { db, statements } = recording(t.db);
    const runs = new RunStore(db);
    const expected: Array<[() => Promise<unknown>, string[]]> = [
      [
        () => runs.list({ limit: 50 }),
        ['runs_queued_idx', 'runs_status_position_idx', 'runs_workstation_status_idx'],
      ],
      [() => runs.listSummaries({ limit: 50, cursor: cursorAt(20_000) }), ['runs_status_position_idx']],
      [() => runs.listSummaries({ limit: 50, status: 'blocked' }), ['runs_status_position_idx']],
      [() => runs.listSummaries({ limit: 50, status: 'queued' }), ['runs_queued_idx']],
      [() => runs.listSummaries({ limit: 50, status: 'running' }), ['runs_workstation_status_idx']],
      [() => runs.listSummaries({ limit: 50, workstation_id: 'ws_3' }), ['runs_workstation_ended_idx']],
      [
        () => runs.list({ limit: 50, workstation_id: 'ws_3', status: 'failed' }),
        ['runs_workstation_ended_idx'],
      ],
      [() => runs.listSummaries({ limit: 50, runtime: 'python' }), ['runs_runtime_status_idx']],
      [() => runCountsByStatus(db, {}), ['runs_queued_idx', 'runs_status_position_idx']],
      [() => runCountsByStatus(db, { workstation_id: 'ws_3' }), ['runs_workstation_ended_idx']],
      [() => runCountsByStatus(db, { runtime: 'python' }), ['runs_runtime_status_idx']],
      // /metrics' runt_cp_runs: exact counts, each status through its index
      [() => runCountsByStatus(db, {}, null), ['runs_queued_idx', 'runs_status_position_idx']],
      [
        () => createMetrics({ db, linkCount: () => 0 }).registry.metrics(),
        ['runs_queued_idx', 'runs_status_position_idx'],
      ],
      [() => knownRuntimes(db), ['runs_runtime_status_idx', 'runs_workstation_status_idx']],
      [() => fleetWithRunsInUse(db), ['runs_workstation_status_idx']],
      [() => pendingFleet(db), ['runs_workstation_status_idx']],
      [() => new BundleStore(db).usedByWorkstation('x', 'ws_1'), ['runs_workstation_status_idx']],
      [() => runs.offeredTo('ws_1'), ['runs_workstation_status_idx']],
      [() => runs.cancelRequestedOn('ws_1'), ['runs_workstation_status_idx']],
      [() => runs.resentOn(['ws_1', 'ws_2']), ['runs_workstation_status_idx']],
      [() => claimedOffers(db, [{ ws: 'ws_1', holder: 'ws_1/r' }]), ['runs_workstation_status_idx']],
      [() => withdrawStaleOffers(db, 30_000), ['runs_offered_idx']],
      [() => expireQueued(db), ['runs_queued_idx']],
      [() => timeOutOverdue(db, 60), ['runs_workstation_status_idx']],
      [() => db.query(pageSql(true), [0, 200]), ['runs_queued_idx', 'runs_workstation_status_idx']],
    ];
    for (const [read, indexes] of expected) {
      statements.length = 0;
      await read();
      const plans: string[] = [];
      for (const s of statements.filter((x) => /\bruns\b/.test(x.text))) {
        plans.push(await explain(t.db, s.text, s.params), await explainGeneric(t.db, s.text, s.params));
      }
      const plan = plans.join('\n');
      expect(plans.length, String(read)).toBeGreaterThan(0);
      expect(plan, String(read)).not.toMatch(/Seq Scan on runs/);
      for (const index of indexes) expect(plan, String(read)).toContain(index);
    }
  });

  // The batched writes of a holder lock their runs, then their leases, in key order first
  // (docs/runs.md "Lock order"): a lock step that finds its rows by `id in (select … from i)`
  // was planned as a hash semi-join over a scan of the whole table (every run and lease ever
  // made: ~143 buffers read per finished run on a bench database); by `id = any (array(…))` it
  // is a lookup of the batch's keys.
  it('locks the runs and leases of a batched write through their keys, not a scan', async () => {
    const { db, statements } = recording(t.db);
    const item = (id: string) => ({ runId: id, workstationId: `ws_${Number(id.slice(5)) % 20}`, token: 1 });
    const writes: Array<[string, () => Promise<unknown>]> = [
      ['start', () => startMany(db, [item('held_30'), item('held_31')])],
      [
        'events',
        () =>
          reportEventsMany(db, [
            {
              ...item('held_40'),
              batch: { first: 0, last: 0, json: '[{"seq":0,"type":"log","payload":{}}]' },
            },
          ]),
      ],
      ['start brief', () => startMany(db, [{ ...item('held_32'), brief: true }])],
      [
        'finish',
        () => finishMany(db, [{ ...item('held_80'), outcome: { status: 'completed', exitCode: 0 } }]),
      ],
      [
        'finish brief',
        () =>
          finishMany(db, [
            { ...item('held_81'), brief: true, outcome: { status: 'completed', exitCode: 0 } },
          ]),
      ],
      [
        'renew',
        () =>
          renewMany(db, [
            { ...item('held_90'), leaseMs: 30_000 },
            { ...item('held_91'), leaseMs: 30_000 },
          ]),
      ],
      ['claim', () => claimMany(db, ['held_5', 'held_6'], 'ws_5', 'ws_5/r', 30_000)],
      ['sweeper', () => db.transaction((tx) => lockExpiredRuns(tx, 100))],
    ];
    for (const [name, write] of writes) {
      statements.length = 0;
      await write();
      const plans: string[] = [];
      for (const s of statements.filter((x) => /\b(runs|leases)\b/.test(x.text))) {
        plans.push(await explain(t.db, s.text, s.params), await explainGeneric(t.db, s.text, s.params));
      }
      const plan = plans.join('\n');
      expect(plans.length, name).toBeGreaterThan(0);
      expect(plan, name).not.toMatch(/Seq Scan on runs/);
      expect(plan, name).not.toMatch(/Seq Scan on leases/);
    }
  });

  // The fenced guard of a batched write (the lease with the item's token is held and live) is
  // one probe of `leases` per item. Checked on the item's columns it was a filter of the items'
  // scan, which the lock step's join (estimated at one locked run) rescanned once per locked
  // run: 25 × 25 probes for a finish of 25 runs, 78 % of the statement's buffer reads on PGlite
  // (issue 9, docs/benchmarks.md). Checked on the run's row, once per run the join found.
  it('probes the lease of each item of a batched write once, not once per item and locked run', async () => {
    const ids = (from: number) => Array.from({ length: 25 }, (_, n) => `held_${from + n}`);
    const item = (id: string) => ({ runId: id, workstationId: `ws_${Number(id.slice(5)) % 20}`, token: 1 });
    const event = (seq: number) => `[{"seq":${seq},"type":"log","payload":{}}]`;
    const writes: Array<[string, string[], (q: Queryable) => Promise<unknown>]> = [
      // held_21..70 are accepted, held_71..170 running
      [
        'start',
        ids(21),
        (q) =>
          startMany(
            q,
            ids(21).map((id) => ({ ...item(id), brief: true })),
          ),
      ],
      [
        'events',
        ids(71),
        // a run's events start at seq 1
        (q) =>
          reportEventsMany(
            q,
            ids(71).map((id) => ({ ...item(id), batch: { first: 1, last: 1, json: event(1) } })),
          ),
      ],
      [
        'finish',
        ids(96),
        (q) =>
          finishMany(
            q,
            ids(96).map((id) => ({
              ...item(id),
              brief: true,
              outcome: { status: 'completed' as const, exitCode: 0 },
            })),
          ),
      ],
    ];
    for (const [name, runIds, write] of writes) {
      const sent: Array<{ text: string; params?: unknown[] }> = [];
      await write({
        query: async (text, params) => (sent.push({ text, params }), { rows: [], rowCount: 0 }),
      });
      const [s] = sent;
      for (const generic of [false, true]) {
        const plan = await explainAnalyzed(t.db, s!.text, s!.params, runIds, generic);
        // the statement did its work: every item passed its guard
        expect(plan, `${name} ${generic ? 'generic' : 'custom'}`).toMatch(
          /Update on runs .*rows=25(\.00)? loops=1/,
        );
        const probes = [...plan.matchAll(/on leases fl .*loops=(\d+)/g)].map((m) => Number(m[1]));
        expect(probes.length, name).toBeGreaterThan(0);
        expect(Math.max(...probes), `${name} ${generic ? 'generic' : 'custom'}\n${plan}`).toBeLessThanOrEqual(
          25,
        );
        // and the UPDATE reads the items once, not once per item: the items joined to the lock
        // step's rows, two CTEs of one row each to the planner, rescanned one for every row of
        // the other (25 × 25 rows)
        const update = plan.slice(plan.indexOf('CTE u'), plan.indexOf('CTE e'));
        const rescans = [...update.matchAll(/CTE Scan on \w+.*loops=(\d+)/g)].map((m) => Number(m[1]));
        expect(rescans.length, name).toBeGreaterThan(0);
        expect(Math.max(...rescans), `${name} ${generic ? 'generic' : 'custom'}\n${plan}`).toBe(1);
      }
    }
  });
});

/** The indexes of `runs` a row in `status` (on workstation `ws`) has an entry in. */
async function entriesFor(db: Database, status: string, ws: string | null): Promise<string[]> {
  const r = await db.query<{ indexname: string; indexdef: string }>(
    `select indexname, indexdef from pg_indexes where tablename = 'runs' order by indexname`,
  );
  const out: string[] = [];
  for (const { indexname, indexdef } of r.rows) {
    const predicate = /\bWHERE (.*)$/i.exec(indexdef)?.[1] ?? 'true';
    const holds = await db.query<{ ok: boolean }>(
      `select ${predicate} as ok from (select $1::text as status, $2::text as workstation_id, 'k'::text as idempotency_key) r`,
      [status, ws],
    );
    // the idempotency index holds runs submitted with a key: not the probe's concern
    if (holds.rows[0]!.ok && indexname !== 'runs_idempotency_key_idx') out.push(indexname);
  }
  return out;
}

/** 20,000 runs on 20 workstations and 3 runtimes: most ended, 170 holding a slot, 2,000 queued (newest). */
async function fill(db: Database): Promise<void> {
  for (let i = 0; i < 20; i++) {
    await db.query(
      `insert into workstations (id, display_name, listening, last_seen_at, runtimes, cpu_count, link_state)
       values ($1, $1, true, now(), '["sh","docker","python"]', 1000, 'connected')`,
      [`ws_${i}`],
    );
    await db.query(
      `insert into credentials (id, kind, token_hash, workstation_id) values ($1, 'workstation', $1, $2)`,
      [`cred_${i}`, `ws_${i}`],
    );
  }
  const runtime = `case when g % 20 < 16 then 'sh' when g % 20 < 19 then 'docker' else 'python' end`;
  await db.query(
    `insert into runs (id, status, runtime, workstation_id, finished_at)
     select 'ended_' || g, case when g % 100 < 90 then 'completed' when g % 100 < 95 then 'failed'
                                when g % 100 < 98 then 'cancelled' else 'blocked' end,
            ${runtime}, case when g % 100 >= 98 then null else 'ws_' || (g % 20) end, now()
       from generate_series(1, 17830) g`,
  );
  await db.query(
    `insert into runs (id, status, runtime, workstation_id, offered_at, accepted_at, timeout_s)
     select 'held_' || g, case when g <= 20 then 'offered' when g <= 70 then 'accepted' else 'running' end,
            ${runtime}, 'ws_' || (g % 20), now(), now(), 3600
       from generate_series(1, 170) g`,
  );
  await db.query(
    `insert into runs (id, status, runtime, queue_timeout_s) select 'queued_' || g, 'queued', ${runtime}, 3600
       from generate_series(1, 2000) g`,
  );
  // a lease row per run that ever held one (kept after release: its fencing token never goes back)
  await db.query(
    `insert into leases (resource, holder, fencing_token, expires_at, acquired_at)
     select id, case when status in ('offered', 'accepted', 'running') then workstation_id || '/r' end, 1,
            now() + interval '1 hour', now()
       from runs where workstation_id is not null and status <> 'offered'`,
  );
  await db.query('analyze');
}

/** The list's cursor past position `p` (as `next_cursor` encodes it). */
const cursorAt = (p: number) => Buffer.from(`p:${p}`).toString('base64url');

/** The pending reasons' read of what the runs of two workstations hold. */
async function pendingFleet(db: Database) {
  const ws = (id: string) => ({ id, status: 'online', runtimes: ['sh'] }) as unknown as Workstation;
  return new PendingReasons(db, {
    list: async () => [ws('ws_1'), ws('ws_2')],
    runtimesOffered: async () => ['sh'],
  }).fleet();
}

/** `db` and every statement sent through it (transactions included). */
function recording(db: Database): { db: Database; statements: Array<{ text: string; params?: unknown[] }> } {
  const statements: Array<{ text: string; params?: unknown[] }> = [];
  const wrap = <Q extends Queryable>(q: Q): Q =>
    new Proxy(q, {
      get(target, key, receiver) {
        if (key === 'query') {
          return (text: string, params?: unknown[]) => {
            statements.push({ text, params });
            return target.query(text, params);
          };
        }
        if (key === 'transaction') {
          return <T>(fn: (tx: Queryable) => Promise<T>) =>
            (target as unknown as Database).transaction((tx) => fn(wrap(tx)));
        }
        const v = Reflect.get(target, key, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  return { db: wrap(db), statements };
}

/**
 * The plan of `text` prepared and planned for any parameters (`force_generic_plan`): what
 * Postgres runs a prepared statement with after its fifth execution on a connection, and
 * PGlite's prepared plans (`@runt/sql` plan cache) may become.
 */
async function explainGeneric(db: Database, text: string, params: unknown[] = []): Promise<string> {
  const literal = (v: unknown): string =>
    v === null || v === undefined
      ? 'null'
      : Array.isArray(v)
        ? `array[${v.map(literal).join(', ')}]::text[]`
        : typeof v === 'number'
          ? String(v)
          : sqlLiteral(v as string);
  return db.transaction(async (tx) => {
    await tx.query(`set local plan_cache_mode = force_generic_plan`);
    await tx.query(`prepare runs_index_probe as ${text}`);
    try {
      const args = params.length ? `(${params.map(literal).join(', ')})` : '';
      const r = await tx.query<{ 'QUERY PLAN': string }>(`explain execute runs_index_probe${args}`);
      return r.rows.map((x) => x['QUERY PLAN']).join('\n');
    } finally {
      await tx.query('deallocate runs_index_probe');
    }
  });
}

/**
 * The plan of `text` as it ran (EXPLAIN ANALYZE; custom, or `generic` as a prepared statement
 * planned for any parameters), on runs `runIds` made held by lease token 1 first (their leases'
 * holders are their workstations' `/r`), all rolled back.
 */
async function explainAnalyzed(
  db: Database,
  text: string,
  params: unknown[] | undefined,
  runIds: string[],
  generic: boolean,
): Promise<string> {
  let plan = '';
  const rollback = new Error('rollback');
  await db
    .transaction(async (tx) => {
      await tx.query(
        `update runs set fencing_token = 1, lease_holder = workstation_id || '/r' where id = any ($1::text[])`,
        [runIds],
      );
      const args = (params ?? []).map((v) => sqlLiteral(v as string)).join(', ');
      if (generic) {
        await tx.query(`set local plan_cache_mode = force_generic_plan`);
        await tx.query(`prepare runs_guard_probe as ${text}`);
      }
      try {
        const r = await tx.query<{ 'QUERY PLAN': string }>(
          generic
            ? `explain (analyze, timing off) execute runs_guard_probe(${args})`
            : `explain (analyze, timing off) ${text}`,
          generic ? undefined : params,
        );
        plan = r.rows.map((x) => x['QUERY PLAN']).join('\n');
      } finally {
        if (generic) await tx.query('deallocate runs_guard_probe');
      }
      throw rollback;
    })
    .catch((e: unknown) => {
      if (e !== rollback) throw e;
    });
  return plan;
}

/** The plan of `text` (not run: some of the readers write). */
async function explain(q: Queryable, text: string, params?: unknown[]): Promise<string> {
  const r = await q.query<{ 'QUERY PLAN': string }>(`explain ${text}`, params);
  return r.rows.map((x) => x['QUERY PLAN']).join('\n');
}
