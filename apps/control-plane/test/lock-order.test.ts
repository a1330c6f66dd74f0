import type { Database } from '@runt/sql';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { createSqlLeaseStore } from '@runt/leases';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as transitions from '../src/runs/transitions.js';
import { Sweeper } from '../src/runs/sweeper.js';
import { addWorkstation, migratedDatabase, noRelaySignals } from './scheduler-fixtures.js';

/**
 * Every statement that locks several runs (or leases) takes them in id order, so two of them
 * touching the same runs never wait on each other's rows (40P01, docs/runs.md "Lock order").
 * Only Postgres has concurrent transactions (PGlite has one connection): the opposite-order
 * cases run there; the batched writes' answers are checked on both stores.
 */
/**
 * Runs `ids` claimed for `${ws}/r1` at `ws`, accepted and unstarted, inserted, offered and
 * claimed in the order given (so their rows lie in that order), with their tokens.
 */
async function claimedRuns(db: Database, ws: string, ids: string[]) {
  const runtime = ws.replace('ws_', '');
  await addWorkstation(db, ws, runtime, ids.length);
  for (const id of ids)
    await db.query(`insert into runs (id, status, runtime, command) values ($1, 'queued', $2, '["x"]')`, [
      id,
      runtime,
    ]);
  await transitions.offer(
    db,
    ids.map((id) => ({ id, ws })),
  );
  const grants = await transitions.claimMany(db, ids, ws, `${ws}/r1`, 60_000);
  return ids.map((id) => ({ id, token: grants.get(id)!.fencingToken }));
}
const writeOf = (ws: string) => (r: { id: string; token: number }) => ({
  runId: r.id,
  workstationId: ws,
  token: r.token,
});

/** Holds the row lock of `runId` in `table` (`runs`, or `leases` by resource) in a transaction of its own until `release()`. */
function holdRow(db: Database, runId: string, table: 'runs' | 'leases' = 'runs') {
  let release!: () => void;
  const open = new Promise<void>((r) => (release = r));
  let locked!: () => void;
  const held = new Promise<void>((r) => (locked = r));
  const done = db.transaction(async (tx) => {
    await tx.query(`select 1 from ${table} where ${table === 'runs' ? 'id' : 'resource'} = $1 for update`, [
      runId,
    ]);
    locked();
    await open;
  });
  return { held, release, done };
}

/**
 * `first()` then `second()` sent while `row` (of `table`) is held by another session, each
 * waiting for a lock before the next step, then the row freed: both settled, with the SQLSTATE
 * each failed with ('ok' when it did not).
 */
async function behindHeldRow<A, B>(
  db: Database,
  row: { id: string; table?: 'runs' | 'leases' },
  first: () => Promise<A>,
  second: () => Promise<B>,
): Promise<{ codes: [string | undefined, string | undefined]; first: Promise<A>; second: Promise<B> }> {
  const blocker = holdRow(db, row.id, row.table);
  await blocker.held;
  const a = first();
  await lockWaiters(db, 1);
  const b = second();
  await lockWaiters(db, 2);
  blocker.release();
  await blocker.done;
  const settled = await Promise.allSettled([a, b]);
  const code = (x: PromiseSettledResult<unknown>) =>
    x.status === 'rejected' ? (x.reason as { code?: string }).code : 'ok';
  return { codes: [code(settled[0]), code(settled[1])], first: a, second: b };
}

/** Resolves once `n` sessions of this database wait for a lock. */
async function lockWaiters(db: Database, n: number) {
  for (let i = 0; ; i++) {
    const r = await db.query<{ n: number }>(
      `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
    );
    if (r.rows[0]!.n >= n) return;
    if (i > 500) {
      const a = await db.query(
        `select pid, state, wait_event_type, wait_event, left(query, 60) q from pg_stat_activity where datname = current_database()`,
      );
      console.log(a.rows);
      throw new Error(`never ${n} lock waiters`);
    }
    await new Promise((res) => setTimeout(res, 10));
  }
}

describe.each(TEST_BACKENDS)('batched writes answer in item order, on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase(backend);
  });
  afterAll(async () => t?.dispose());

  it('answers each item of a batched start, events and finish in item order (ids out of order)', async () => {
    const [c, b, a] = await claimedRuns(t.db, 'ws_items', ['run_items_c', 'run_items_b', 'run_items_a']);
    const items = [c!, a!, b!].map(writeOf('ws_items'));
    expect((await transitions.startMany(t.db, items)).map((o) => o?.run?.id)).toEqual([c!.id, a!.id, b!.id]);
    const batch = { first: 1, last: 1, json: '[{"seq":1,"type":"stdout","payload":{"line":"x"}}]' };
    expect(
      await transitions.reportEventsMany(
        t.db,
        items.map((i) => ({ ...i, batch })),
      ),
    ).toEqual([2, 2, 2]);
    const done = await transitions.finishMany(
      t.db,
      [b!, c!]
        .map(writeOf('ws_items'))
        .map((i) => ({ ...i, outcome: { status: 'completed' as const, exitCode: 0 } })),
    );
    expect(done.map((o) => [o?.run?.id, o?.status])).toEqual([
      [b!.id, 'completed'],
      [c!.id, 'completed'],
    ]);
  });
});

describe.each(TEST_BACKENDS)(
  'the sweep in lock order still reaches every expired lease, on %s',
  (backend) => {
    let t: TestDatabase;
    beforeAll(async () => {
      t = await migratedDatabase(backend);
    });
    afterAll(async () => t?.dispose());

    it('fails a lost run behind 100 older expired leases whose runs are gone, and clears those leases', async () => {
      // 100 expired leases older than the run's, for runs an operator deleted: before, each sweep
      // read those 100 first, found no run to lock and stopped, and the run stayed accepted.
      await t.db.query(
        `insert into leases (resource, holder, fencing_token, expires_at, acquired_at)
       select 'gone_' || g, 'ws_gone/r1', 1, clock_timestamp() - interval '1 hour' + g * interval '1 ms', clock_timestamp() - interval '2 hours'
         from generate_series(1, 100) g`,
      );
      const [r] = await claimedRuns(t.db, 'ws_orphan', ['run_orphan_a']);
      await t.db.query(
        `update leases set expires_at = clock_timestamp() - interval '1 second' where resource = $1`,
        [r!.id],
      );
      const sweeper = new Sweeper({
        db: t.db,
        logger: pino({ level: 'silent' }),
        leases: createSqlLeaseStore(t.db),
        signals: noRelaySignals(),
        intervalMs: 60_000,
        offerTimeoutMs: 60_000,
      });
      for (let i = 0; i < 3; i++) await sweeper.sweep();
      const run = await t.db.query<{ status: string; failure_kind: string | null }>(
        'select status, failure_kind from runs where id = $1',
        [r!.id],
      );
      expect(run.rows[0]).toEqual({ status: 'failed', failure_kind: 'runner-lost' });
      const held = await t.db.query<{ n: number }>(
        `select count(*)::int as n from leases where resource like 'gone_%' and holder is not null`,
      );
      expect(held.rows[0]!.n).toBe(0);
    });
  },
);

// Only Postgres has concurrent transactions (PGlite has one connection).
describe('multi-row locks in id order, on postgres', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase('postgres');
    // A table of many ended runs, as in production: a batch's update probes runs by primary key.
    await t.db.query(
      `insert into runs (id, status, runtime, finished_at) select 'ended_' || g, 'completed', 'sh', now() from generate_series(1, 5000) g`,
    );
    await t.db.query('analyze runs');
  });
  afterAll(async () => t?.dispose());

  it("a batched start and a re-registration's re-send of the same runs, in opposite orders, both apply (no 40P01)", async () => {
    // x < w < y by id; their rows lie (and the batch's items come) in the opposite order.
    const [y, w, x] = await claimedRuns(t.db, 'ws_order', ['run_order_c', 'run_order_b', 'run_order_a']);
    // The re-send locks x, then waits for w (held here); the batch, its items y then x, locked
    // y first (before: in item or row order) and waits for x; w freed, the re-send goes on to y.
    const { codes, second: batch } = await behindHeldRow(
      t.db,
      { id: w!.id },
      () => transitions.claimedOffers(t.db, [{ ws: 'ws_order', holder: 'ws_order/r1' }]),
      () => transitions.startMany(t.db, [y!, x!].map(writeOf('ws_order'))),
    );
    expect(codes[0]).toBe('ok');
    expect(codes[1]).toBe('ok');
    expect((await batch).map((a) => a?.status)).toEqual(['running', 'running']);
  });

  it('a batched finish and a batched renewal of the same leases, in opposite orders, both apply (no 40P01)', async () => {
    // a < w < c by id. The renewal, its items c, w, a, locked c's lease first (before: in item
    // order) and waits for w's (held here); the finish of a and c locked a's lease and waits for
    // c's; w freed, the renewal goes on to a.
    const [a, w, c] = await claimedRuns(t.db, 'ws_lease', ['run_lease_a', 'run_lease_b', 'run_lease_c']);
    const { codes, second: finish } = await behindHeldRow(
      t.db,
      { id: w!.id, table: 'leases' },
      () =>
        transitions.renewMany(
          t.db,
          [c!, w!, a!].map((r) => ({ ...writeOf('ws_lease')(r), leaseMs: 60_000 })),
        ),
      () =>
        transitions.finishMany(
          t.db,
          [a!, c!]
            .map(writeOf('ws_lease'))
            .map((i) => ({ ...i, outcome: { status: 'completed' as const, exitCode: 0 } })),
        ),
    );
    expect(codes[0]).toBe('ok');
    expect(codes[1]).toBe('ok');
    expect((await finish).map((o) => o?.status)).toEqual(['completed', 'completed']);
  });

  it("a holder's claim again (a re-registration) and a batched renewal of the same leases, in opposite orders, both apply (no 40P01)", async () => {
    // a < w < c by id; the claim names them c, w, a. It locks the runs (in id order), then claims
    // their leases: before in the order named, c's first, then it waited for w's (held here); the
    // renewal, in id order, locked a's lease and waits for w's; w freed, the claim took w and
    // waited for a while the renewal waited for w. Now the claim takes a's lease first.
    const [a, w, c] = await claimedRuns(t.db, 'ws_reclaim', [
      'run_reclaim_a',
      'run_reclaim_b',
      'run_reclaim_c',
    ]);
    const { codes, first: claim } = await behindHeldRow(
      t.db,
      { id: w!.id, table: 'leases' },
      () => transitions.claimMany(t.db, [c!.id, w!.id, a!.id], 'ws_reclaim', 'ws_reclaim/r1', 60_000),
      () =>
        transitions.renewMany(
          t.db,
          [a!, w!, c!].map((r) => ({ ...writeOf('ws_reclaim')(r), leaseMs: 60_000 })),
        ),
    );
    expect(codes).toEqual(['ok', 'ok']);
    // the same holder's claim keeps each lease's token
    expect([...(await claim).values()].map((g) => g.fencingToken).sort()).toEqual(
      [a!, w!, c!].map((r) => r.token).sort(),
    );
  });

  it('a late renewal of a run handed back and queued again locks no lease it will not renew', async () => {
    // q < x by id. q was handed back (lease released, run queued again); its agent's late
    // renewal rides a batch with x, whose lease is held here: the renewal waits for x's lease,
    // and must not hold q's meanwhile (a scheduling pass claims q's lease in its page's order:
    // holding it there was a 40P01 in waiting, docs/runs.md "Lock order").
    const [q, x] = await claimedRuns(t.db, 'ws_late', ['run_late_a', 'run_late_b']);
    await t.db.query(`update leases set holder = null, expires_at = clock_timestamp() where resource = $1`, [
      q!.id,
    ]);
    await t.db.query(
      `update runs set status = 'queued', workstation_id = null, lease_holder = null, offered_at = null, accepted_at = null where id = $1`,
      [q!.id],
    );
    const blocker = holdRow(t.db, x!.id, 'leases');
    await blocker.held;
    const renewal = transitions.renewMany(
      t.db,
      [q!, x!].map((r) => ({ ...writeOf('ws_late')(r), leaseMs: 60_000 })),
    );
    await lockWaiters(t.db, 1);
    // From another session, while the renewal waits: q's lease is free to lock at once.
    const probe = await t.db
      .query('select resource from leases where resource = $1 for no key update nowait', [q!.id])
      .then(
        (r) => r.rowCount,
        (e: { code?: string }) => e.code,
      );
    blocker.release();
    await blocker.done;
    expect(probe).toBe(1);
    expect((await renewal).map((a) => a !== undefined)).toEqual([false, true]);
  });

  it('a sweep takes a run before its expired lease and skips a run another transaction holds (no wait, no 40P01)', async () => {
    const [r] = await claimedRuns(t.db, 'ws_sweep', ['run_sweep_a']);
    await t.db.query(
      `update leases set expires_at = clock_timestamp() - interval '1 second' where resource = $1`,
      [r!.id],
    );
    const sweeper = new Sweeper({
      db: t.db,
      logger: pino({ level: 'silent' }),
      leases: createSqlLeaseStore(t.db),
      signals: noRelaySignals(),
      intervalMs: 60_000,
      offerTimeoutMs: 60_000,
    });
    // A holder's write in flight holds the run: the sweep leaves it (and its lease) to the next.
    const writer = holdRow(t.db, r!.id);
    await writer.held;
    const first = await Promise.race([
      sweeper.sweep(),
      new Promise<'waited'>((res) => setTimeout(() => res('waited'), 3_000)),
    ]);
    writer.release();
    await writer.done;
    expect(first === 'waited' ? first : first.lost).toEqual([]);
    const lease = await t.db.query<{ holder: string | null }>(
      'select holder from leases where resource = $1',
      [r!.id],
    );
    expect(lease.rows[0]!.holder).toBe('ws_sweep/r1');
    expect((await sweeper.sweep()).lost).toEqual([{ runId: r!.id, outcome: 'failed' }]);
  });
});
