import { submitRunRequestSchema, type ControlMessage } from '@runt/protocol';
import { countStatements, openPostgres, type Database } from '@runt/sql';
import type { TestDatabase } from '@runt/sql/testing';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { LinkRelay } from '../src/link/link-relay.js';
import { LinkRegistry } from '../src/link/link-registry.js';
import { NotificationBus } from '../src/notifications/bus.js';
import { RunStore } from '../src/runs/run-store.js';
import { isLegalMove } from '../src/runs/state-machine.js';
import { freshOffer, SCHEDULER_LOCK } from '../src/runs/scheduler.js';
import { createSqlLeaseStore } from '@runt/leases';
import { EventWaiters } from '../src/event-waiters.js';
import { CommandStore } from '../src/runs/command-store.js';
import { EventStore } from '../src/runs/event-store.js';
import { RunLifecycle } from '../src/runs/run-lifecycle.js';
import { createRunSignals } from '../src/runs/run-signals.js';
import * as transitions from '../src/runs/transitions.js';
import {
  addWorkstation as addWorkstationOf,
  explainRowsRead,
  migratedDatabase,
  newScheduler,
  untilPassWaitsForLock,
} from './scheduler-fixtures.js';

/** The lock and placement statements of a lone submit of one run `id` on `runtime`, as replica A. */
const freshOne = (id: string, runtime: string) =>
  freshOffer(
    JSON.stringify([{ n: 0, id, runtime, command: ['x'], env: {}, placement_labels: {}, max_attempts: 1 }]),
    'A',
  );

/**
 * Issue 10's cross-replica offer latency: on Postgres a lone fresh run is placed by its submit's
 * own message (insert, advisory lock, placement and NOTIFY; then the WAL flush before the
 * answer) — 2 round trips from the submit to an offer published for the replica holding the
 * link, instead of the insert's and then a pass's 3 — and the notification carries the row, so
 * that replica sends it without a query. Capacity stays serialised by the scheduler's lock.
 */

describe('a submit that places its own run, on postgres', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase('postgres');
  });
  afterAll(async () => t?.dispose());
  beforeEach(async () => {
    await t.db.query(`delete from runs`);
    await t.db.query(`delete from credentials`);
    await t.db.query(`delete from workstations`);
  });

  /** A workstation of the fleet, its link held by replica `B` unless `replica` says otherwise. */
  const addWorkstation = (id: string, runtime: string, slots: number, replica: string | null = 'B') =>
    addWorkstationOf(t.db, id, runtime, slots, replica);

  const parse = (runtime: string, extra: object = {}) =>
    submitRunRequestSchema.parse({ runtime, command: ["it's", 'a\\b'], ...extra });
  /** A submit on replica `A`, placing its run. */
  const submitOnA = async (db: Database, runtime: string, extra: object = {}) =>
    (
      await transitions.submitMany(db, [parse(runtime, extra)], undefined, undefined, (items) =>
        freshOffer(items, 'A'),
      )
    )[0]!.run;

  /**
   * A replica's relay on `db` (its own LISTEN connection) holding the link of `workstationId`
   * only: a registered link whose socket records the frames sent on it.
   */
  const relayHolding = async (db: Database, workstationId: string) => {
    const sent: ControlMessage[] = [];
    const links = new LinkRegistry();
    const bus = new NotificationBus(db);
    const relay = new LinkRelay({
      db,
      bus,
      links,
      runs: new RunStore(db),
      logger: pino({ level: 'silent' }),
      scanMs: 60_000,
      onCapacityFreed: () => {},
    });
    await bus.start();
    // Linked after the LISTEN is up (its resync on `up` reads the offers of the links it holds).
    links.add({
      socket: {
        readyState: 1,
        send: (text: string) => sent.push(JSON.parse(text) as ControlMessage),
      } as never,
      workstationId,
      credentialId: `cred_${workstationId}`,
      alive: true,
      registered: true,
      chain: Promise.resolve(),
    });
    return { bus, relay, sent };
  };

  it('offers the run in the submit message, publishes it with its row, and the replica holding the link sends it without a query', async () => {
    await addWorkstation('ws_b', 'rt', 2);
    let bStatements = 0;
    const bDb = countStatements(t.db, (c) => (bStatements += c.statements));
    const { bus, sent } = await relayHolding(bDb, 'ws_b');
    try {
      bStatements = 0;
      let roundTrips = 0;
      const aDb = countStatements(t.db, (c) => (roundTrips += c.roundTrips));
      const run = await submitOnA(aDb, 'rt');
      expect([run.status, run.workstation_id]).toEqual(['offered', 'ws_b']);
      // The insert + lock + placement + NOTIFY + COMMIT and the WAL flush: one message.
      expect(roundTrips).toBe(1);
      await expect.poll(() => sent.length, { timeout: 5000 }).toBe(1);
      expect(sent[0]).toMatchObject({
        type: 'offer',
        id: run.id,
        run: { id: run.id, status: 'offered', workstation_id: 'ws_b', command: ["it's", 'a\\b'] },
      });
      // The row the notification carried (`row_to_json`, its `held_here` too) is the run A
      // answers with, field for field.
      expect(sent[0]).toEqual({ type: 'offer', id: run.id, run });
      expect(bStatements).toBe(0);
    } finally {
      await bus.close();
    }
  });

  it('a replica that holds none of the links a notification is for drops it without parsing it', async () => {
    await addWorkstation('ws_to_b', 'tob', 2);
    await addWorkstation('ws_on_a', 'ona', 2, 'A');
    const a = await relayHolding(t.db, 'ws_on_a');
    const b = await relayHolding(t.db, 'ws_to_b');
    const parsed = vi.spyOn(JSON, 'parse');
    try {
      // Both forms on the wire: the placement's, written by Postgres (`{"w" : …`), and a
      // message published by the relay (`{"w":…`), both for the link B holds.
      const run = await submitOnA(t.db, 'tob');
      a.relay.send('ws_to_b', { type: 'cancel', run_id: run.id });
      await expect.poll(() => b.sent.map((m) => m.type), { timeout: 5000 }).toEqual(['offer', 'cancel']);
      // Then one published by B for A's link: A hears the channel in order, so once it sent
      // this one it has handled the two before it.
      b.relay.send('ws_on_a', { type: 'drain' });
      await expect.poll(() => a.sent.map((m) => m.type), { timeout: 5000 }).toEqual(['drain']);
      const payloads = parsed.mock.calls
        .map(([text]) => String(text))
        .filter((text) => /^\{\s*"w"/.test(text) && text.includes('ws_to_b'));
      // B parsed the two (it sends them); A parsed neither.
      expect(payloads).toHaveLength(2);
    } finally {
      parsed.mockRestore();
      await a.bus.close();
      await b.bus.close();
    }
  });

  it('sends the placement prepared: planned once per connection, not per submit', async () => {
    await addWorkstation('ws_p', 'pp', 8);
    const one = await openPostgres({ url: t.url!, max: 1 });
    try {
      for (let i = 0; i < 3; i++) expect((await submitOnA(one, 'pp')).status).toBe('offered');
      const prepared = await one.query<{ statement: string; calls: number }>(
        `select statement from pg_prepared_statements where statement like '%pg_notify%' or statement like 'insert into runs%'`,
      );
      // The run's insert, placed (one statement), prepared once on the one connection.
      expect(prepared.rows).toHaveLength(1);
    } finally {
      await one.close();
    }
  });

  it("inserts the run already offered: one row version, written by the message's one write, in 5 statements", async () => {
    await addWorkstation('ws_once', 'once', 4);
    let statements = 0;
    const counted = countStatements(t.db, (c) => (statements += c.statements));
    const run = await submitOnA(counted, 'once');
    expect(run).toMatchObject({ status: 'offered', workstation_id: 'ws_once' });
    expect(isLegalMove('submit', null, run.status)).toBe(true);
    // BEGIN, the scheduler's lock, the placed insert, COMMIT, the WAL flush: the run inserted
    // queued and then updated offered took one statement more (6).
    expect(statements).toBe(5);
    // The row's command id within its transaction (`cmin`): the first write (0). Inserted
    // queued, then updated offered by the next statement, the live version was the second
    // write's (1), beside a dead first version and its index entries.
    const row = await t.db.query<{ cmin: number; status: string }>(
      `select cmin::text::int as cmin, status from runs where id = $1`,
      [run.id],
    );
    expect(row.rows).toEqual([{ cmin: 0, status: 'offered' }]);
  });

  it('reads no queued run of a runtime no free workstation offers to know whether an older run waits', async () => {
    await addWorkstation('ws_f', 'free', 2);
    // A backlog nobody can run (no workstation offers its runtime), older than the submit.
    await t.db.query(
      `insert into runs (id, status, runtime, command, env, max_attempts)
         select 'run_nobody_' || i, 'queued', 'nobody', '["x"]'::jsonb, '{}'::jsonb, 1 from generate_series(1, 2000) i`,
    );
    const [lock, place] = freshOne('run_fresh', 'free');
    const { read, placed } = await t.db
      .transaction(async (tx) => {
        await tx.query(lock!.text);
        // EXPLAIN ANALYZE executes the placement: measured in a savepoint, undone, then run for real.
        await tx.query('savepoint explained');
        const read = await explainRowsRead(tx, place!.text, place!.params);
        await tx.query('rollback to savepoint explained');
        const placed = await tx.query<{ status: string; workstation_id: string | null }>(
          place!.text,
          place!.params,
        );
        throw Object.assign(new Error('rollback'), { read, placed: placed.rows });
      })
      .catch((e: Error & { read?: number; placed?: unknown[] }) => {
        if (e.placed === undefined) throw e;
        return e;
      });
    // The same statement offers the fresh run: the probe ran and found no older run a free
    // workstation could take (a run that came back empty would read nothing and place nothing).
    expect(placed).toMatchObject([{ status: 'offered', workstation_id: 'ws_f' }]);
    // The run itself, its offer, the workstation's used slots: a handful. It read all 2,000
    // (one scan of the queue's index filtered by runtime) before, under the scheduler's lock.
    expect(read).toBeLessThan(20);
  });

  it('reads the free workstations once, not twice, when no run is queued', async () => {
    // 200 free workstations of another runtime, and the one the run goes to; nothing queued.
    await t.db.query(
      `insert into workstations (id, display_name, listening, last_seen_at, runtimes, cpu_count, link_state, link_replica)
         select 'ws_other_' || i, 'other', true, now(), '["other"]'::jsonb, 4, 'connected', 'B' from generate_series(1, 200) i`,
    );
    await t.db.query(
      `insert into credentials (id, kind, token_hash, workstation_id)
         select 'cred_' || id, 'workstation', 'hash_' || id, id from workstations`,
    );
    await addWorkstation('ws_e', 'empty-queue', 2);
    const [lock, place] = freshOne('run_e', 'empty-queue');
    const { read, placed } = await t.db
      .transaction(async (tx) => {
        await tx.query(lock!.text);
        const read = await explainRowsRead(tx, place!.text, place!.params, ['workstations']);
        const placed = await tx.query<{ id: string; status: string; workstation_id: string | null }>(
          `select id, status, workstation_id from runs`,
        );
        throw Object.assign(new Error('rollback'), { read, placed: placed.rows });
      })
      .catch((e: Error & { read?: number; placed?: unknown[] }) => {
        if (e.placed === undefined) throw e;
        return e;
      });
    expect(placed).toEqual([{ id: 'run_e', status: 'offered', workstation_id: 'ws_e' }]);
    // The candidates' one walk (201 rows); the FIFO probe's list of free workstations (`f`), a
    // second walk of all 201 with their used slots, is read only when some run is queued.
    expect(read).toBeGreaterThanOrEqual(201);
    expect(read).toBeLessThan(260);
  });

  it('runs the placement from its generic plan from the first submit on a connection (no custom plans)', async () => {
    await addWorkstation('ws_g', 'gp', 8);
    const one = await openPostgres({ url: t.url!, max: 1 });
    try {
      for (let i = 0; i < 3; i++) expect((await submitOnA(one, 'gp')).status).toBe('offered');
      const plans = await one.query<{ generic: number; custom: number }>(
        `select generic_plans::int as generic, custom_plans::int as custom from pg_prepared_statements
          where statement like '%pg_notify%'`,
      );
      // Postgres' default plans a prepared statement's first five executions for their
      // parameters (custom_plans 3 here): ~0.8 ms of planning each, in the offer's path.
      expect(plans.rows).toEqual([{ generic: 3, custom: 0 }]);
      // Only for the submit's own message: the setting ends with its transaction.
      const mode = await one.query<{ mode: string }>(`select current_setting('plan_cache_mode') as mode`);
      expect(mode.rows[0]!.mode).toBe('auto');
    } finally {
      await one.close();
    }
  });

  it("never places beyond a workstation's slots, also when submits of two replicas race", async () => {
    await addWorkstation('ws_one', 'one', 1);
    const other = await openPostgres({ url: t.url! });
    try {
      const runs = await Promise.all(
        Array.from({ length: 8 }, (_, i) => submitOnA(i % 2 ? other : t.db, 'one')),
      );
      expect(runs.filter((r) => r.status === 'offered')).toHaveLength(1);
      const n = await t.db.query<{ n: number }>(
        `select count(*)::int as n from runs where workstation_id = 'ws_one' and status = 'offered'`,
      );
      expect(n.rows[0]!.n).toBe(1);
    } finally {
      await other.close();
    }
  });

  it('reads the capacity a pass committed while the submit waited for the lock', async () => {
    await addWorkstation('ws_lk', 'lk', 1);
    const first = (await transitions.submit(t.db, parse('lk'))).run; // queued, no placement
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
      // `first` is still queued and older: the submit must not place over it either way; make
      // it wait for the lock, then the holder takes the only slot with `first`.
      const submitted = submitOnA(t.db, 'lk');
      await untilPassWaitsForLock(t.db, 'the submit');
      release();
      await holder;
      expect((await submitted).status).toBe('queued');
    } finally {
      await other.close();
    }
  });

  it('leaves the run queued (for the pass) behind an older placeable run', async () => {
    await addWorkstation('ws_q', 'q', 4);
    const older = (await transitions.submit(t.db, parse('q'))).run;
    expect((await submitOnA(t.db, 'q')).status).toBe('queued');
    await t.db.query(`update runs set status = 'cancelled' where id = $1`, [older.id]);
    expect((await submitOnA(t.db, 'q')).status).toBe('queued'); // the one just queued is older
    await t.db.query(`update runs set status = 'cancelled' where status = 'queued'`);
    expect((await submitOnA(t.db, 'q')).status).toBe('offered');
    // An older run of a runtime no free workstation offers does not hold it back.
    await t.db.query(`update runs set status = 'cancelled' where status = 'queued'`);
    await transitions.submit(t.db, parse('nowhere'));
    expect((await submitOnA(t.db, 'q')).status).toBe('offered');
  });

  it('offers onto a link held by this replica without a notification, and hands the run to deliverHere before the answer', async () => {
    await addWorkstation('ws_here', 'here', 4, 'A');
    const listener = await openPostgres({ url: t.url! });
    const published: string[] = [];
    const listening = await listener.listen!(
      'runt_link',
      (p) => published.push(p),
      () => {},
    );
    try {
      const delivered: Array<{ id: string; status: string }> = [];
      const out = await transitions.submitMany(
        t.db,
        [parse('here')],
        undefined,
        undefined,
        (items) => freshOffer(items, 'A'),
        async (run) => {
          delivered.push({ id: run.id, status: run.status });
          return undefined; // a plain offer: the submit flushes the WAL itself
        },
      );
      const run = out[0]!.run;
      expect([run.status, run.workstation_id]).toEqual(['offered', 'ws_here']);
      expect(delivered).toEqual([{ id: run.id, status: 'offered' }]);
      // A link held elsewhere is still published (the control: the listener hears the channel).
      await addWorkstation('ws_there', 'there', 4, 'B');
      const there = await submitOnA(t.db, 'there');
      await expect.poll(() => published.length, { timeout: 5000 }).toBe(1);
      expect(JSON.parse(published[0]!)).toMatchObject({ w: 'ws_there', offer: there.id });
      expect(JSON.parse(published[0]!).row).not.toHaveProperty('held_here');
    } finally {
      await listening.close();
      await listener.close();
    }
  });

  /**
   * Replica `A`'s lifecycle and scheduler (as server.ts wires them), claiming on offer for
   * `ws/r1` at every workstation, over a relay whose link sends do `send` (false: the link closed).
   */
  const claimingOnA = (
    send: (ws: string, m: ControlMessage) => boolean,
    more: Partial<ConstructorParameters<typeof RunLifecycle>[0]> = {},
  ) => {
    const relay = {
      send: (ws: string, m: ControlMessage) => void send(ws, m),
      sendHere: send,
      relay: async <T>(_tx: unknown, items: T) => items,
      capacityFreed() {},
    };
    const scheduler = newScheduler(t.db, relay);
    const lifecycle: RunLifecycle = new RunLifecycle({
      db: t.db,
      leases: createSqlLeaseStore(t.db),
      runs: new RunStore(t.db),
      events: new EventStore(t.db),
      commands: new CommandStore(t.db),
      signals: createRunSignals({ waiters: new EventWaiters(), relay }),
      placeFresh: (id) => freshOffer(id, 'A'),
      claimers: (ws) => ({ holder: `${ws}/r1`, leaseMs: 60_000 }),
      deliverClaimed: (ws, message, grants) => scheduler.deliverClaimed(ws, message, grants),
      ...more,
    });
    return { scheduler, lifecycle };
  };
  const runNow = async (id: string) =>
    (
      await t.db.query<{ status: string; attempt: number; holder: string | null }>(
        `select r.status, r.attempt, l.holder from runs r left join leases l on l.resource = r.id where r.id = $1`,
        [id],
      )
    ).rows[0]!;

  it('hands back at once a run its submit claimed on offer here whose link closed before the send (no attempt used)', async () => {
    await addWorkstation('ws_gone', 'gone', 2, 'A');
    const { scheduler, lifecycle } = claimingOnA(() => false);
    try {
      const [out] = await lifecycle.submitMany([parse('gone')]);
      // Claimed (durable), found unsent, handed back: answered as it is now, not as claimed.
      // (queued; or offered again, plainly, if the pass the hand-back asked for came first).
      expect(['queued', 'offered']).toContain(out!.run.status);
      expect(out!.run.lease ?? null).toBeNull();
      const now = await runNow(out!.run.id);
      expect(now.status).not.toBe('accepted'); // back in the queue (or offered again by the pass it asked for)
      expect([now.attempt, now.holder]).toEqual([1, null]);
    } finally {
      await scheduler.stop();
    }
  });

  it("holds back a cancel committed after its submit's claim on offer here until the offer-claimed went out", async () => {
    await addWorkstation('ws_cx', 'cx', 2, 'A');
    const frames: ControlMessage[] = [];
    const links = new LinkRegistry();
    links.add({
      socket: {
        readyState: 1,
        send: (text: string) => frames.push(JSON.parse(text) as ControlMessage),
      } as never,
      workstationId: 'ws_cx',
      credentialId: 'cred_ws_cx',
      alive: true,
      registered: true,
      chain: Promise.resolve(),
    });
    const { scheduler, lifecycle } = claimingOnA((ws, m) => links.send(ws, m), {
      holdCancels: (ids) => links.holdCancels(ids),
      // The cancel commits after the claim's COMMIT and before the send (its message goes at once).
      deliverClaimed: async (ws, message, grants) => {
        const cancelled = await lifecycle.cancel(grants[0]!.run.id);
        expect(cancelled?.cancel_requested).toBe(true);
        return scheduler.deliverClaimed(ws, message, grants);
      },
    });
    try {
      const [out] = await lifecycle.submitMany([parse('cx')]);
      expect(out!.run.status).toBe('accepted');
      expect(frames.map((f) => f.type)).toEqual(['offer-claimed', 'cancel']);
    } finally {
      await scheduler.stop();
    }
  });

  it('answers the submit of a run claimed here whose send threw, and leaves the claim to its lease (not known unsent)', async () => {
    await addWorkstation('ws_throws', 'throws', 2, 'A');
    const { scheduler, lifecycle } = claimingOnA(() => {
      throw new Error('socket write failed');
    });
    try {
      const [out] = await lifecycle.submitMany([parse('throws')]);
      expect(out!.run.status).toBe('accepted');
      expect(await runNow(out!.run.id)).toMatchObject({ status: 'accepted', holder: 'ws_throws/r1' });
    } finally {
      await scheduler.stop();
    }
  });

  it('places as a pass would: labels, pin, cpus, most free slots first', async () => {
    await addWorkstation('ws_a', 'p', 2);
    await addWorkstation('ws_c', 'p', 4);
    await t.db.query(`update workstations set labels = '{"gpu":"yes"}' where id = 'ws_a'`);
    expect((await submitOnA(t.db, 'p')).workstation_id).toBe('ws_c');
    expect((await submitOnA(t.db, 'p', { placement: { labels: { gpu: 'yes' } } })).workstation_id).toBe(
      'ws_a',
    );
    expect((await submitOnA(t.db, 'p', { placement: { workstation_id: 'ws_a' } })).workstation_id).toBe(
      'ws_a',
    );
    // ws_a is full now (2 of 2); 3 cpus fit only ws_c (4 cpus, 1 used).
    expect((await submitOnA(t.db, 'p', { placement: { workstation_id: 'ws_a' } })).status).toBe('queued');
    await t.db.query(`update runs set status = 'cancelled' where status = 'queued'`);
    expect((await submitOnA(t.db, 'p', { resources: { cpus: 3 } })).workstation_id).toBe('ws_c');
    expect((await submitOnA(t.db, 'p', { resources: { cpus: 2 } })).status).toBe('queued');
  });
});
