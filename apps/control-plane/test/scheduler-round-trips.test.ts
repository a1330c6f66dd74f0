import { submitRunRequestSchema } from '@runt/protocol';
import { countStatements, openPostgres } from '@runt/sql';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LINK_CHANNEL, LinkRelay } from '../src/link/link-relay.js';
import { LinkRegistry } from '../src/link/link-registry.js';
import { NotificationBus } from '../src/notifications/bus.js';
import { RunStore } from '../src/runs/run-store.js';
import { SCHEDULER_LOCK } from '../src/runs/scheduler.js';
import {
  addWorkstation,
  migratedDatabase,
  newScheduler,
  untilPassWaitsForLock,
  watchingPages,
} from './scheduler-fixtures.js';
import * as transitions from '../src/runs/transitions.js';

/**
 * The offer path's round trips (issue 10): a pass that places a fresh run sends `BEGIN`, the
 * advisory lock (Postgres only: the page's snapshot must come after it) and ONE statement for
 * the queued page and its candidate workstations in one round trip on Postgres, then the offer
 * `update` and `COMMIT` — each round trip costs a wake-up of Postgres on a loaded machine.
 */
describe.each(TEST_BACKENDS)('scheduling pass round trips on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase(backend);
    await addWorkstation(t.db, 'ws_rt', 'rt', 2);
  });
  afterAll(async () => t?.dispose());
  // Replicas and the advisory lock exist on Postgres only (PGlite is one process, one
  // connection): these tests are defined there, not skipped here.
  const onPostgres = (name: string, fn: () => Promise<void>) => {
    if (backend === 'postgres') it(name, fn);
  };

  it('places a fresh run in one transaction of 3 round trips', async () => {
    let roundTrips = 0;
    const db = countStatements(t.db, (c) => (roundTrips += c.roundTrips));
    const scheduler = newScheduler(db);
    const { run } = await transitions.submit(
      t.db,
      submitRunRequestSchema.parse({ runtime: 'rt', command: ['x'] }),
    );
    const offered = await scheduler.pass();
    expect(offered.map((r) => [r.id, r.status, r.workstation_id])).toEqual([[run.id, 'offered', 'ws_rt']]);
    // PGlite: the page (its BEGIN with it once its plan is prepared; this first sighting is
    // counted so, and goes as two calls), the offer, COMMIT — no plan setting (5 calls before).
    expect(roundTrips).toBe(3);
    // Within capacity: a second and third run, one slot left for the second only (cpu_count 2).
    const second = (
      await transitions.submit(t.db, submitRunRequestSchema.parse({ runtime: 'rt', command: ['x'] }))
    ).run;
    const third = (
      await transitions.submit(t.db, submitRunRequestSchema.parse({ runtime: 'rt', command: ['x'] }))
    ).run;
    expect((await scheduler.pass()).map((r) => r.id)).toEqual([second.id]);
    expect((await scheduler.pass()).map((r) => r.id)).toEqual([]);
    const status = await t.db.query<{ status: string }>('select status from runs where id = $1', [third.id]);
    expect(status.rows[0]!.status).toBe('queued');
  });

  // Across replicas: no link is held here, so the offer is published for the replica that
  // holds it, with `pg_notify` sent together with the COMMIT — no round trip more.
  onPostgres(
    'places a fresh run for a link held by another replica in 3 round trips, its NOTIFY sent with the COMMIT',
    async () => {
      // Two slots: the pass leaves one free.
      await addWorkstation(t.db, 'ws_far', 'far', 2);
      const heard: string[] = [];
      const listener = await t.db.listen!(
        LINK_CHANNEL,
        (p) => heard.push(p),
        () => {},
      );
      try {
        let roundTrips = 0;
        const db = countStatements(t.db, (c) => (roundTrips += c.roundTrips));
        const relay = new LinkRelay({
          db,
          bus: new NotificationBus(db),
          links: new LinkRegistry(),
          runs: new RunStore(db),
          logger: pino({ level: 'silent' }),
          scanMs: 60_000,
          onCapacityFreed: () => {},
        });
        const scheduler = newScheduler(db, relay);
        // Quotes and backslashes travel inside the NOTIFY's SQL literal.
        const command = ["it's", 'a\\b', '"c"'];
        const { run } = await transitions.submit(
          t.db,
          submitRunRequestSchema.parse({ runtime: 'far', command }),
        );
        expect((await scheduler.pass()).map((r) => r.id)).toEqual([run.id]);
        expect(roundTrips).toBe(3);
        await expect.poll(() => heard.length, { timeout: 5000 }).toBe(1);
        const wire = JSON.parse(heard[0]!) as {
          w: string;
          m: { type: string; id: string; run: { command: string[] } };
        };
        expect(wire.w).toBe('ws_far');
        expect(wire.m).toMatchObject({ type: 'offer', id: run.id, run: { command } });
      } finally {
        await listener.close();
      }
    },
  );

  // The page is a constant text with `$1`/`$2`, sent in a pipeline with the lock and `BEGIN`:
  // planned once per connection, not per pass (as literal SQL text, before).
  onPostgres('sends the page prepared: planned once per connection, not per pass', async () => {
    await addWorkstation(t.db, 'ws_prep', 'prep', 8);
    const one = await openPostgres({ url: t.url!, max: 1 });
    try {
      const scheduler = newScheduler(one);
      for (let i = 0; i < 3; i++) {
        await transitions.submit(one, submitRunRequestSchema.parse({ runtime: 'prep', command: ['x'] }));
        expect(await scheduler.pass()).toHaveLength(1);
      }
      const prepared = await one.query<{ n: number }>(
        `select count(*)::int as n from pg_prepared_statements where statement like '%for update skip locked%'`,
      );
      expect(prepared.rows[0]!.n).toBe(1);
    } finally {
      await one.close();
    }
  });

  // The lock and the page share a round trip but stay two statements: in read committed the
  // page reads from a snapshot taken when it starts, which must come after the lock is granted.
  // Here another transaction holds the lock and, while the pass waits for it, fills the only
  // slot; the pass must see that slot taken.
  onPostgres('reads the capacity a pass committed while this one waited for the lock', async () => {
    await addWorkstation(t.db, 'ws_lk', 'lk', 1);
    const submitLk = async () =>
      (await transitions.submit(t.db, submitRunRequestSchema.parse({ runtime: 'lk', command: ['x'] }))).run;
    const first = await submitLk();
    const second = await submitLk();
    const other = await openPostgres({ url: t.url! });
    try {
      let release: () => void = () => {};
      const released = new Promise<void>((r) => (release = r));
      let locked: () => void = () => {};
      const lockHeld = new Promise<void>((r) => (locked = r));
      const holder = other.transaction(async (tx) => {
        await tx.query('select pg_advisory_xact_lock($1)', [SCHEDULER_LOCK]);
        locked();
        await released;
        await transitions.offer(tx, [{ id: first.id, ws: 'ws_lk' }]);
      });
      await lockHeld;
      const pass = newScheduler(t.db).pass();
      // The pass is waiting for the lock (its page not read yet) before the holder commits.
      await untilPassWaitsForLock(t.db);
      release();
      await holder;
      expect(await pass).toEqual([]);
      const rows = await t.db.query<{ id: string; status: string }>(
        'select id, status from runs where id = any($1) order by position',
        [[first.id, second.id]],
      );
      expect(rows.rows).toEqual([
        { id: first.id, status: 'offered' },
        { id: second.id, status: 'queued' },
      ]);
    } finally {
      await other.close();
    }
  });
});

/**
 * A queue of runs no free workstation offers a runtime for is passed over in the page's own
 * statement (one index scan), not page by page: with 1,000 of them ahead of a placeable run the
 * pass reads one page (it read six, one per 200 runs, before), and a fleet with no free slot at
 * all is known from that same statement (no query of its own).
 */
describe.each(TEST_BACKENDS)('a pass behind runs no free workstation can take, on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase(backend);
    await addWorkstation(t.db, 'ws_ok', 'ok', 1);
  });
  afterAll(async () => t?.dispose());

  it('reads one page for a placeable run behind 1,000 it cannot place, and none more once the fleet is full', async () => {
    const parse = (runtime: string) => submitRunRequestSchema.parse({ runtime, command: ['x'] });
    await transitions.submitMany(
      t.db,
      Array.from({ length: 1000 }, () => parse('nowhere')),
    );
    const { run } = await transitions.submit(t.db, parse('ok'));
    const pages: unknown[] = [];
    // countStatements for its pass-through of every Database member; the pages are seen here.
    const db = watchingPages(
      countStatements(t.db, () => {}),
      (page) => pages.push(page),
    );
    const scheduler = newScheduler(db);
    expect((await scheduler.pass()).map((r) => r.id)).toEqual([run.id]);
    expect(pages).toHaveLength(1);
    // The only slot is taken: the next pass reads one page, finds nothing free and stops.
    await transitions.submit(t.db, parse('ok'));
    pages.length = 0;
    expect(await scheduler.pass()).toEqual([]);
    expect(pages).toHaveLength(1);
  });
});

/**
 * A page that takes the last free slot of every workstation with one ends the pass: the fleet is
 * full, so the next page could place nothing. Before, a backlog longer than a page cost every
 * pass that filled the fleet a second transaction (`BEGIN`, the lock, an empty page, `COMMIT`).
 */
describe.each(TEST_BACKENDS)('a pass that fills the fleet, on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase(backend);
    await addWorkstation(t.db, 'ws_fill', 'fill', 2);
  });
  afterAll(async () => t?.dispose());

  it('reads one page, not a second, when that page filled every free slot', async () => {
    await transitions.submitMany(
      t.db,
      Array.from({ length: 5 }, () => submitRunRequestSchema.parse({ runtime: 'fill', command: ['x'] })),
    );
    let transactions = 0;
    const db = countStatements(t.db, (c) => (transactions += c.transactions));
    const scheduler = newScheduler(db, undefined, { pageSize: 3 }); // a backlog (5) longer than a page
    expect(await scheduler.pass()).toHaveLength(2);
    expect(transactions).toBe(1);
    const queued = await t.db.query<{ n: number }>(
      `select count(*)::int as n from runs where status = 'queued'`,
    );
    expect(queued.rows[0]!.n).toBe(3);
  });

  // Claim on offer is durable before the agent gets the lease it starts the run under. A page of
  // claims only sends its claim as the transaction's last statement, with the COMMIT
  // (`commitWith`, issue 9: 3 round trips before). On Postgres that COMMIT no longer waits for
  // the WAL flush (the scheduler's lock is free at once): the pass then waits for durability
  // with one more round trip (`flushWal`), after the COMMIT, outside the lock, before it sends
  // the claimed offer — 2 round trips under the lock, as before, and 3 in all. PGlite commits
  // synchronously (a setting of its own before the COMMIT) and flushes nothing more.
  it('claims on offer in 2 round trips under the lock on Postgres (the claim and COMMIT in one), then its flush', async () => {
    await t.db.query(`update runs set status = 'completed' where status <> 'queued'`);
    await t.db.query(`delete from runs where status = 'queued'`);
    const { run } = await transitions.submit(
      t.db,
      submitRunRequestSchema.parse({ runtime: 'fill', command: ['x'] }),
    );
    let roundTrips = 0;
    let flushes = 0;
    const counted = countStatements(t.db, (c) => (roundTrips += c.roundTrips));
    const db: typeof counted = {
      ...counted,
      query: (text, params) => {
        if (text.includes("'runt-flush'")) flushes++;
        return counted.query(text, params);
      },
    };
    const scheduler = newScheduler(db, undefined, {
      claimers: () => ({ holder: 'ws_fill/r1', leaseMs: 30_000 }),
    });
    expect((await scheduler.pass()).map((r) => [r.id, r.status])).toEqual([[run.id, 'accepted']]);
    // Postgres: BEGIN + plan setting + lock + page, then the claim + COMMIT; then the flush, one
    // round trip of its own after the COMMIT. PGlite: BEGIN + the page, then the claim, the
    // synchronous-commit setting and COMMIT in one call (6 calls before), no flush.
    expect(flushes).toBe(backend === 'postgres' ? 1 : 0);
    expect(roundTrips - flushes).toBe(2);
    expect((await t.db.query(`select status from runs where id = $1`, [run.id])).rows).toEqual([
      { status: 'accepted' },
    ]);
  });
});

/**
 * A write riding a pass (`withNextPass`: a finish) is durable before it is answered, as it would
 * be alone. PGlite: the page sets the commit synchronous itself (`synchronous_commit = on` where a
 * plain page sets `off`), so the pass sends no statement of its own for it: 3 calls into PGlite
 * (BEGIN, the write and the page in one; the offer; COMMIT). Postgres (since the async commit): the page stays `off` and the pass flushes the WAL
 * after the COMMIT, outside the lock: 7 statements under the transaction (BEGIN, the write, the
 * plan setting, the lock, the page; the offer; COMMIT) + the flush.
 */
describe.each(TEST_BACKENDS)('a pass carrying a write, on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase(backend);
    await addWorkstation(t.db, 'ws_ride', 'ride', 2);
  });
  afterAll(async () => t?.dispose());

  // PGlite: the transaction commits synchronously, set by the page. Postgres: it commits
  // asynchronously (the scheduler's lock is free at the COMMIT) and the pass then waits for the
  // WAL flush outside the lock, one statement of its own, before the ridden write is answered.
  it('is answered after its flush returned (Postgres), with no statement more than the page under the lock', async () => {
    const { run } = await transitions.submit(
      t.db,
      submitRunRequestSchema.parse({ runtime: 'ride', command: ['x'] }),
    );
    let statements = 0;
    let roundTrips = 0;
    let flushes = 0;
    const settings: unknown[] = [];
    const counted = countStatements(t.db, (c) => {
      statements += c.statements;
      roundTrips += c.roundTrips;
    });
    const db = watchingPages(
      {
        ...counted,
        query: <T>(text: string, params?: unknown[]) =>
          counted.query<T>(text, params).then((r) => {
            if (text.includes("'runt-flush'")) flushes++; // counted once it returned
            return r;
          }),
      },
      (page) => settings.push((page as { async_commit?: unknown }).async_commit),
    );
    const scheduler = newScheduler(db);
    const ridden = scheduler.withNextPass({ text: `select $1::text as ridden`, params: ['x'] });
    // The flushes returned by the time the ridden write is answered (Postgres: its flush).
    const flushedWhenAnswered = await ridden!.then((rows) => {
      expect(rows).toEqual([{ ridden: 'x' }]);
      return flushes;
    });
    expect(flushedWhenAnswered).toBe(backend === 'postgres' ? 1 : 0);
    await scheduler.idle();
    await scheduler.stop();
    const status = await t.db.query<{ status: string }>('select status from runs where id = $1', [run.id]);
    expect(status.rows[0]!.status).toBe('offered');
    // PGlite: the page set the transaction's commit synchronous (a plain page sets it off).
    // Postgres: off, and the flush after the COMMIT (7 statements in the transaction, as before).
    expect(settings).toEqual([backend === 'postgres' ? 'off' : 'on']);
    expect(flushes).toBe(backend === 'postgres' ? 1 : 0);
    if (backend === 'postgres') expect(statements - flushes).toBe(7);
    // PGlite: BEGIN, the write and the page in one call, the offer, COMMIT (6 before).
    else expect(roundTrips).toBe(3);
  });
});

/**
 * Every run a page reads it locks (`for update skip locked`: a WAL record each on Postgres), so
 * a page reads no more runs than the free workstations have slots: with a backlog, 200 locks a
 * page to place the few runs that fit, before. A run that fits nowhere is still passed over:
 * once a page cannot place all it read, the pass reads whole pages.
 */
describe.each(TEST_BACKENDS)('the runs a page reads, on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase(backend);
    await addWorkstation(t.db, 'ws_few', 'few', 2);
  });
  afterAll(async () => t?.dispose());

  /** A scheduler on `t.db` that records how many runs each page read. */
  const recording = () => {
    const reads: number[] = [];
    const db = watchingPages(t.db, (page) => reads.push(page.queued.length));
    return { reads, scheduler: newScheduler(db) };
  };

  it('reads as many queued runs as there are free slots', async () => {
    await transitions.submitMany(
      t.db,
      Array.from({ length: 6 }, () => submitRunRequestSchema.parse({ runtime: 'few', command: ['x'] })),
    );
    const { reads, scheduler } = recording();
    expect(await scheduler.pass()).toHaveLength(2);
    expect(reads).toEqual([2]);
  });

  it('passes over runs that fit nowhere with whole pages', async () => {
    await t.db.query(`update runs set status = 'completed' where status <> 'queued'`);
    await t.db.query(`delete from runs`);
    // Pinned to a workstation that does not exist: never placeable, ahead of a placeable run.
    await transitions.submitMany(
      t.db,
      Array.from({ length: 5 }, () =>
        submitRunRequestSchema.parse({
          runtime: 'few',
          command: ['x'],
          placement: { workstation_id: 'ws_none' },
        }),
      ),
    );
    const { run } = await transitions.submit(
      t.db,
      submitRunRequestSchema.parse({ runtime: 'few', command: ['x'] }),
    );
    const { reads, scheduler } = recording();
    expect((await scheduler.pass()).map((r) => r.id)).toEqual([run.id]);
    expect(reads).toEqual([2, 4]);
  });
});
