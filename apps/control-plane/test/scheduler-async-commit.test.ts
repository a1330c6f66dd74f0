import { submitRunRequestSchema } from '@runt/protocol';
import type { Database } from '@runt/sql';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { EventWaiters } from '../src/event-waiters.js';
import { LinkRegistry } from '../src/link/link-registry.js';
import type { LinkMessage } from '../src/link/link-relay.js';
import { createRunSignals } from '../src/runs/run-signals.js';
import { SCHEDULER_LOCK } from '../src/runs/scheduler.js';
import * as transitions from '../src/runs/transitions.js';
import { addWorkstation, migratedDatabase, newScheduler, testLifecycle } from './scheduler-fixtures.js';

/**
 * Issues 9 and 10: on Postgres a pass commits without waiting for its WAL flush, so the
 * scheduler's lock (a transaction lock) is free at its COMMIT, and the next pass — of this
 * replica or another — places while the disk syncs; the pass then waits for the flush
 * (`flushWal`) outside the lock before it sends a claimed offer or answers a finish that rode
 * it. The flush is held back here (the test's `db` waits at the flush statement until released).
 */
/** A fragment only the scheduler's hand-back of an unsent claim sends (`transitions.handBackUnsent`). */
const HAND_BACK_UNSENT_GUARD = 'r.offered_at <= r.accepted_at';

describe.each(TEST_BACKENDS)('a pass waits for its WAL flush outside the lock, on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase(backend);
  });
  afterAll(async () => t?.dispose());

  /** `t.db` whose flush statements wait for `release()`; `log` records flushes and sends in order. */
  function gated() {
    const log: string[] = [];
    let release!: () => void;
    const open = new Promise<void>((r) => (release = r));
    let flushes = 0;
    const db: Database = {
      ...t.db,
      query: async (text, params) => {
        if (!text.includes("'runt-flush'")) return t.db.query(text, params);
        flushes++;
        log.push('flush.sent');
        await open;
        const r = await t.db.query(text, params);
        log.push('flush.returned');
        return r;
      },
    } as Database;
    const sent: LinkMessage[] = [];
    const relay: Parameters<typeof newScheduler>[1] = {
      send(workstationId, message) {
        sent.push({ workstationId, message });
        log.push(`send ${message.type} ${workstationId}`);
      },
      relay: async (_tx, items) => items,
      capacityFreed() {},
    };
    return { db, relay, sent, log, release, flushes: () => flushes };
  }
  /**
   * A link of `ws` that closes between a pass's claim and its send (the send finds no open link
   * here): `g`'s relay, claims on offer for `${ws}/r1` until then, plain offers after.
   */
  function closingLink(g: ReturnType<typeof gated>, ws: string) {
    let closed = false;
    const relay: Parameters<typeof newScheduler>[1] = {
      ...g.relay,
      sendHere: () => ((closed = true), false),
    };
    return {
      relay,
      claimers: () => (closed ? undefined : { holder: `${ws}/r1`, leaseMs: 60_000 }),
      closed: () => closed,
    };
  }
  const submit = async (runtime: string) =>
    (await transitions.submit(t.db, submitRunRequestSchema.parse({ runtime, command: ['x'] }))).run;
  const status = async (id: string) =>
    (await t.db.query<{ status: string }>(`select status from runs where id = $1`, [id])).rows[0]!.status;
  const eventually = async (what: string, ok: () => Promise<boolean>) => {
    for (let i = 0; !(await ok()); i++) {
      if (i > 500) throw new Error(`never: ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const until = async (what: string, ok: () => boolean) => {
    for (let i = 0; !ok(); i++) {
      if (i > 500) throw new Error(`never: ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };

  it('frees the lock at COMMIT: a next pass places while the claim’s flush is held; the claimed offer goes after the flush', async () => {
    await addWorkstation(t.db, 'ws_claims', 'claims-rt', 1);
    await addWorkstation(t.db, 'ws_plain', 'plain-rt', 1);
    const g = gated();
    const scheduler = newScheduler(g.db, g.relay, {
      claimers: (ws) => (ws === 'ws_claims' ? { holder: 'ws_claims/r1', leaseMs: 60_000 } : undefined),
    });
    try {
      const claimed = await submit('claims-rt');
      scheduler.kick();
      if (backend !== 'postgres') {
        // PGlite: its commit is synchronous, as before; no flush of its own.
        await scheduler.idle();
        expect(g.flushes()).toBe(0);
        expect(await status(claimed.id)).toBe('accepted');
        expect(g.log).toEqual(['send offer-claimed ws_claims']);
        return;
      }
      await until('the pass flushes', () => g.flushes() === 1);
      // Committed and visible, not sent: nobody acts on the claim before it is durable.
      expect(await status(claimed.id)).toBe('accepted');
      expect(g.sent).toEqual([]);
      // The scheduler's lock is free (another session takes it at once) …
      const other = await t.db.query<{ got: boolean }>(
        `select pg_try_advisory_xact_lock(${SCHEDULER_LOCK}) as got`,
      );
      expect(other.rows[0]!.got).toBe(true);
      // … and the next pass of this scheduler places (a plain offer, sent before durability).
      const plain = await submit('plain-rt');
      expect(scheduler.kick()).toBe(true);
      await until('the next pass offers', () => g.sent.some((m) => m.workstationId === 'ws_plain'));
      expect(await status(plain.id)).toBe('offered');
      expect(g.log).toEqual(['flush.sent', 'send offer ws_plain']);
      g.release();
      await scheduler.idle();
      expect(g.log).toEqual([
        'flush.sent',
        'send offer ws_plain',
        'flush.returned',
        'send offer-claimed ws_claims',
      ]);
    } finally {
      // A failed assertion must not leave the flush held: stop() waits for it.
      g.release();
      await scheduler.stop();
    }
  });

  it('answers a finish that rode a pass only after the flush', async () => {
    await addWorkstation(t.db, 'ws_fin', 'fin-rt', 1);
    const g = gated();
    const scheduler = newScheduler(g.db, g.relay);
    const signals = createRunSignals({ waiters: new EventWaiters(), relay: g.relay });
    signals.attachScheduler(scheduler);
    const lifecycle = testLifecycle(t.db, signals);
    try {
      const first = await submit('fin-rt');
      await scheduler.pass();
      const c = await lifecycle.claim('ws_fin', first.id, 'r1', 60_000);
      const next = await submit('fin-rt'); // waits for the slot
      let answered = false;
      const answer = lifecycle
        .reportStatus('ws_fin', first.id, {
          fencing_token: c.fencing_token,
          status: 'completed',
          exit_code: 0,
        })
        .then((a) => ((answered = true), a));
      if (backend === 'postgres') {
        await until('the pass flushes', () => g.flushes() === 1);
        // Both written and visible in the pass's commit; the finish is not answered yet.
        expect(await status(first.id)).toBe('completed');
        expect(await status(next.id)).toBe('offered');
        await new Promise((r) => setTimeout(r, 50));
        expect(answered).toBe(false);
      }
      g.release();
      expect((await answer).status).toBe('completed');
      expect(await status(next.id)).toBe('offered');
      expect(g.flushes()).toBe(backend === 'postgres' ? 1 : 0);
    } finally {
      g.release();
      await scheduler.stop();
    }
  });
  it('stop() waits for a delivery in flight: the claimed offer goes out before it resolves', async () => {
    await addWorkstation(t.db, 'ws_stop', 'stop-rt', 1);
    const g = gated();
    const scheduler = newScheduler(g.db, g.relay, {
      claimers: () => ({ holder: 'ws_stop/r1', leaseMs: 60_000 }),
    });
    let stopped = false;
    try {
      await submit('stop-rt');
      scheduler.kick();
      if (backend === 'postgres') await until('the pass flushes', () => g.flushes() === 1);
      const stopping = scheduler.stop().then(() => (stopped = true));
      if (backend === 'postgres') {
        // The pass committed; its delivery waits for the held flush, and stop() for it.
        await new Promise((r) => setTimeout(r, 100));
        expect(stopped).toBe(false);
        expect(g.sent).toEqual([]);
        g.release();
      }
      await stopping;
      expect(g.sent.map((m) => m.message.type)).toEqual(['offer-claimed']);
    } finally {
      g.release();
      await scheduler.stop();
    }
  });

  it('a run that cannot be opened and whose failing write fails holds back no other claimed offer', async () => {
    await addWorkstation(t.db, 'ws_unopen', 'unopen-rt', 2);
    const g = gated();
    g.release();
    // After the pass's commit, every write on the scheduler's db but the flush fails (the
    // unopenable run's fail is the only one).
    let failing = false;
    const db: Database = {
      ...g.db,
      query: async (text, params) => {
        if (failing && !text.includes("'runt-flush'")) throw new Error('connection lost');
        return g.db.query(text, params);
      },
    };
    const scheduler = newScheduler(db, g.relay, {
      claimers: () => ({ holder: 'ws_unopen/r1', leaseMs: 60_000 }),
    });
    try {
      const sealed = await submit('unopen-rt');
      const fine = await submit('unopen-rt');
      // Sealed secrets, and this scheduler has no key to open them.
      await t.db.query(`update runs set secret_env = '{"T":{"kid":"k","v":"x"}}'::jsonb where id = $1`, [
        sealed.id,
      ]);
      failing = true;
      await scheduler.pass();
      expect(
        g.sent.map((m) => m.message.type === 'offer-claimed' && m.message.runs.map((r) => r.run.id)),
      ).toEqual([[fine.id]]);
      // Its fail did not apply yet: accepted …
      expect(await status(sealed.id)).toBe('accepted');
      // … and is retried in the background: once the database answers, it fails (before: it sat
      // accepted until its lease lapsed and the sweeper failed it runner-lost).
      failing = false;
      await eventually('the fail retried', async () => (await status(sealed.id)) === 'failed');
      expect(await status(fine.id)).toBe('accepted');
    } finally {
      failing = false;
      await scheduler.stop();
    }
  });

  it('hands a claim its link never carried back to the queue at once, no attempt used (retried while the database fails)', async () => {
    await addWorkstation(t.db, 'ws_closed', 'closed-rt', 1);
    const g = gated();
    g.release();
    // The link closes between the claim and its send: the send finds no open link here.
    const link = closingLink(g, 'ws_closed');
    // The hand-back's first attempts fail (a connection lost).
    let failing = true;
    const db: Database = {
      ...g.db,
      query: async (text, params) => {
        if (failing && text.includes(HAND_BACK_UNSENT_GUARD)) throw new Error('connection lost');
        return g.db.query(text, params);
      },
    };
    const scheduler = newScheduler(db, link.relay, {
      claimers: link.claimers,
    });
    try {
      const run = await submit('closed-rt');
      await scheduler.pass();
      expect(link.closed()).toBe(true);
      const claimed = (
        await t.db.query<{ status: string; attempt: number; fencing_token: number }>(
          `select status, attempt, fencing_token from runs where id = $1`,
          [run.id],
        )
      ).rows[0]!;
      expect(claimed.status).toBe('accepted');
      failing = false;
      // Handed back (its lease given up, no attempt used), then offered plainly by the pass
      // the hand-back asked for (before: accepted until its lease lapsed, then runner-lost).
      await eventually('handed back and offered again', async () => (await status(run.id)) === 'offered');
      const row = (
        await t.db.query<{ attempt: number; fencing_token: number | null }>(
          `select attempt, fencing_token from runs where id = $1`,
          [run.id],
        )
      ).rows[0]!;
      expect(Number(row.attempt)).toBe(Number(claimed.attempt));
      expect(row.fencing_token).toBeNull();
      const lease = await t.db.query<{ holder: string | null }>(
        `select holder from leases where resource = $1`,
        [run.id],
      );
      expect(lease.rows.map((l) => l.holder)).toEqual([null]);
      expect(g.sent.map((m) => m.message.type)).toEqual(['offer']);
    } finally {
      failing = false;
      await scheduler.stop();
    }
  });

  it('stop() ends a hand-back whose first write the database never answers', async () => {
    await addWorkstation(t.db, 'ws_mute', 'mute-rt', 1);
    const g = gated();
    g.release();
    const link = closingLink(g, 'ws_mute');
    // The hand-back hangs: a database host gone silent, no timeout.
    let handBackAsked = false;
    const db: Database = {
      ...g.db,
      query: async (text, params) => {
        if (!text.includes(HAND_BACK_UNSENT_GUARD)) return g.db.query(text, params);
        handBackAsked = true;
        return new Promise<never>(() => {});
      },
    };
    const scheduler = newScheduler(db, link.relay, {
      claimers: link.claimers,
    });
    await submit('mute-rt');
    const pass = scheduler.pass().catch(() => {});
    await until('the hand-back is asked', () => handBackAsked);
    const started = Date.now();
    await scheduler.stop();
    await pass;
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('ends a claim its link never carried cancelled, not queued, when it was cancelled before the hand-back', async () => {
    await addWorkstation(t.db, 'ws_cxl', 'cxl-rt', 1);
    const g = gated();
    g.release();
    const link = closingLink(g, 'ws_cxl');
    let runId = '';
    let cancelled = false;
    // The cancel lands between the pass's COMMIT and the hand-back (accepted: only the flag is set).
    const db: Database = {
      ...g.db,
      query: async (text, params) => {
        if (!cancelled && text.includes(HAND_BACK_UNSENT_GUARD)) {
          cancelled = true;
          await transitions.cancel(t.db, runId);
        }
        return g.db.query(text, params);
      },
    };
    const scheduler = newScheduler(db, link.relay, {
      claimers: link.claimers,
    });
    try {
      runId = (await submit('cxl-rt')).id;
      await scheduler.pass();
      expect(link.closed()).toBe(true);
      await eventually('ended cancelled', async () => (await status(runId)) === 'cancelled');
      await scheduler.pass();
      expect(await status(runId)).toBe('cancelled');
      expect(g.sent.map((m) => m.message.type)).toEqual([]);
      const lease = await t.db.query<{ holder: string | null }>(
        `select holder from leases where resource = $1`,
        [runId],
      );
      expect(lease.rows.map((l) => l.holder)).toEqual([null]);
    } finally {
      await scheduler.stop();
    }
  });

  it("ends an agent's hand-back of a run cancelled while accepted cancelled, not queued", async () => {
    await addWorkstation(t.db, 'ws_hbc', 'hbc-rt', 1);
    const run = await submit('hbc-rt');
    const [grant] = await t.db.transaction((tx) =>
      transitions.claimOnOffer(tx, [{ id: run.id, ws: 'ws_hbc', holder: 'ws_hbc/r1', leaseMs: 60_000 }]),
    );
    await transitions.cancel(t.db, run.id);
    expect(await transitions.handBack(t.db, run.id, 'ws_hbc', grant!.fencingToken)).toBe('cancelled');
    expect(await status(run.id)).toBe('cancelled');
    const ended = await t.db.query<{ n: string }>(
      `select count(*) as n from run_events where run_id = $1 and type = 'terminal_status'`,
      [run.id],
    );
    expect(Number(ended.rows[0]!.n)).toBe(1);
    const lease = await t.db.query<{ holder: string | null }>(
      `select holder from leases where resource = $1`,
      [run.id],
    );
    expect(lease.rows.map((l) => l.holder)).toEqual([null]);
    // a second hand-back finds nothing to do
    expect(await transitions.handBack(t.db, run.id, 'ws_hbc', grant!.fencingToken)).toBeUndefined();
  });

  it("marks a re-sent claim's offered_at strictly after its accepted_at, even with the clock behind it", async () => {
    await addWorkstation(t.db, 'ws_tie', 'tie-rt', 1);
    const run = await submit('tie-rt');
    const [grant] = await t.db.transaction((tx) =>
      transitions.claimOnOffer(tx, [{ id: run.id, ws: 'ws_tie', holder: 'ws_tie/r1', leaseMs: 60_000 }]),
    );
    // A clock that reads at most accepted_at at the re-send (a 1 ms tie on PGlite, a step back).
    await t.db.query(
      `update runs set accepted_at = clock_timestamp() + interval '1 hour', offered_at = clock_timestamp() + interval '1 hour' where id = $1`,
      [run.id],
    );
    expect((await transitions.claimedOffers(t.db, [{ ws: 'ws_tie', holder: 'ws_tie/r1' }])).length).toBe(1);
    const row = (
      await t.db.query<{ later: boolean }>(
        `select offered_at > accepted_at as later from runs where id = $1`,
        [run.id],
      )
    ).rows[0]!;
    expect(row.later).toBe(true);
    expect(await transitions.handBackUnsent(t.db, grant!)).toBeUndefined();
    expect(await status(run.id)).toBe('accepted');
    await transitions.cancel(t.db, run.id);
  });

  it('does not hand back a claim a re-registration re-sent (fenced by the re-send)', async () => {
    await addWorkstation(t.db, 'ws_resent', 'resent-rt', 2);
    const claim = async () => {
      const run = await submit('resent-rt');
      const [grant] = await t.db.transaction((tx) =>
        transitions.claimOnOffer(tx, [
          { id: run.id, ws: 'ws_resent', holder: 'ws_resent/r1', leaseMs: 60_000 },
        ]),
      );
      return grant!;
    };
    const resent = await claim();
    // The agent linked again and its registration re-sent the claim: it has it.
    expect(
      (await transitions.claimedOffers(t.db, [{ ws: 'ws_resent', holder: 'ws_resent/r1' }])).length,
    ).toBe(1);
    expect(await transitions.handBackUnsent(t.db, resent)).toBeUndefined();
    expect(await status(resent.run.id)).toBe('accepted');
    // One never re-sent goes back.
    const unsent = await claim();
    expect(await transitions.handBackUnsent(t.db, unsent)).toBe('queued');
    expect(await status(unsent.run.id)).toBe('queued');
    await transitions.cancel(t.db, unsent.run.id); // not placed by the next tests' passes
  });
  /**
   * `g.db` whose flushes always fail and whose claim read-backs (`confirmClaims`) fail until
   * `confirmOk()` says otherwise, `onConfirm` running first (a test's "the crash lost it").
   */
  let confirmAsked = false;
  function flushLost(
    g: ReturnType<typeof gated>,
    confirmOk: (attempt: number) => boolean,
    onConfirm = async () => {},
  ) {
    let confirms = 0;
    confirmAsked = false;
    const db: Database = {
      ...g.db,
      query: async (text, params) => {
        if (text.includes("'runt-flush'")) throw new Error('flush: connection lost');
        if (text.includes("'runt-confirm'")) {
          confirmAsked = true;
          await onConfirm();
          if (!confirmOk(++confirms)) throw new Error('confirm: connection lost');
        }
        return g.db.query(text, params);
      },
    };
    return { db, confirms: () => confirms };
  }

  it('after a failed flush sends the claims read back as durable, once the database answers again', async () => {
    await addWorkstation(t.db, 'ws_lost_flush', 'lost-flush-rt', 1);
    const g = gated();
    g.release();
    const f = flushLost(g, (n) => n >= 3);
    const scheduler = newScheduler(f.db, g.relay, {
      claimers: () => ({ holder: 'ws_lost_flush/r1', leaseMs: 60_000 }),
    });
    try {
      const run = await submit('lost-flush-rt');
      await scheduler.pass();
      const row = (
        await t.db.query<{ status: string; fencing_token: number }>(
          `select status, fencing_token from runs where id = $1`,
          [run.id],
        )
      ).rows[0]!;
      expect(row.status).toBe('accepted');
      // Postgres: two read-backs failed, the third confirmed it. PGlite: no flush, sent at once.
      expect(f.confirms()).toBe(backend === 'postgres' ? 3 : 0);
      expect(g.sent).toHaveLength(1);
      const m = g.sent[0]!.message;
      expect(m.type === 'offer-claimed' && m.runs.map((c) => [c.run.id, c.fencing_token])).toEqual([
        [run.id, Number(row.fencing_token)],
      ]);
    } finally {
      await scheduler.stop();
    }
  });

  it('after a failed flush does not send a claim the database lost', async () => {
    await addWorkstation(t.db, 'ws_lost_claim', 'lost-claim-rt', 1);
    const g = gated();
    g.release();
    let run: { id: string } | undefined;
    // The crash lost the claim's asynchronous commit: the run is queued again when read back.
    const f = flushLost(
      g,
      (n) => n >= 2,
      async () => {
        await t.db.query(
          `update runs set status = 'queued', workstation_id = null, lease_holder = null, fencing_token = null where id = $1`,
          [run!.id],
        );
      },
    );
    const scheduler = newScheduler(f.db, g.relay, {
      claimers: () => ({ holder: 'ws_lost_claim/r1', leaseMs: 60_000 }),
    });
    try {
      run = await submit('lost-claim-rt');
      await scheduler.pass();
      if (backend === 'postgres') {
        expect(f.confirms()).toBe(2);
        expect(g.sent).toEqual([]);
      } else expect(g.sent).toHaveLength(1);
    } finally {
      await scheduler.stop();
    }
  });
  it('stop() ends a read-back of claims that the database never answers', async () => {
    await addWorkstation(t.db, 'ws_silent', 'silent-rt', 1);
    const g = gated();
    g.release();
    // The flush fails and every read-back hangs: a database host gone silent, no timeout.
    const f = flushLost(
      g,
      () => true,
      () => new Promise<void>(() => {}),
    );
    const scheduler = newScheduler(f.db, g.relay, {
      claimers: () => ({ holder: 'ws_silent/r1', leaseMs: 60_000 }),
    });
    await submit('silent-rt');
    const pass = scheduler.pass();
    if (backend === 'postgres') {
      await until('the read-back is asked', () => confirmAsked);
    } else await pass;
    const started = Date.now();
    await scheduler.stop();
    await pass;
    expect(Date.now() - started).toBeLessThan(1_000);
    // Postgres: not known durable, so not sent. PGlite: no flush, sent at once.
    expect(g.sent).toHaveLength(backend === 'postgres' ? 0 : 1);
  });

  it('releases a cancel held for a run by two passes only at the last release', () => {
    const links = new LinkRegistry();
    const got: Array<{ type: string }> = [];
    const socket = { readyState: 1, send: (text: string) => got.push(JSON.parse(text) as { type: string }) };
    links.add({
      socket: socket as unknown as WebSocket,
      workstationId: 'ws_twice',
      credentialId: 'cred_ws_twice',
      alive: true,
      registered: true,
      chain: Promise.resolve(),
    });
    const first = links.holdCancels(['run_twice']);
    const second = links.holdCancels(['run_twice']);
    links.send('ws_twice', { type: 'cancel', run_id: 'run_twice' });
    first();
    first(); // a release counts once
    expect(got).toEqual([]);
    second();
    expect(got.map((m) => m.type)).toEqual(['cancel']);
  });

  it('sends a cancel that came while the claimed offer waited for its flush after the offer', async () => {
    await addWorkstation(t.db, 'ws_cancel', 'cancel-rt', 1);
    const g = gated();
    // The link registry with the agent's link (a socket that records what it is sent).
    const links = new LinkRegistry();
    const got: Array<{ type: string }> = [];
    const socket = { readyState: 1, send: (text: string) => got.push(JSON.parse(text) as { type: string }) };
    links.add({
      socket: socket as unknown as WebSocket,
      workstationId: 'ws_cancel',
      credentialId: 'cred_ws_cancel',
      alive: true,
      registered: true,
      claimer: { holder: 'ws_cancel/r1', leaseMs: 60_000 },
      chain: Promise.resolve(),
    });
    const relay: Parameters<typeof newScheduler>[1] = {
      send: (ws, message) => void links.send(ws, message),
      relay: async (_tx, items) => items,
      capacityFreed() {},
    };
    const scheduler = newScheduler(g.db, relay, {
      claimers: (ws) => links.claimerOf(ws),
      holdCancels: (ids) => links.holdCancels(ids),
    });
    const lifecycle = testLifecycle(t.db, createRunSignals({ waiters: new EventWaiters(), relay }));
    try {
      const run = await submit('cancel-rt');
      scheduler.kick();
      if (backend === 'postgres') await until('the pass flushes', () => g.flushes() === 1);
      else await scheduler.idle();
      // The cancel commits (after the pass: the run's row lock) and is sent at once — held
      // back while the run's claimed offer waits for the flush.
      expect((await lifecycle.cancel(run.id))?.cancel_requested).toBe(true);
      if (backend === 'postgres') expect(got).toEqual([]);
      g.release();
      await scheduler.idle();
      expect(got.map((m) => m.type)).toEqual(['offer-claimed', 'cancel']);
    } finally {
      g.release();
      await scheduler.stop();
    }
  });
  it('does not retry a failed flush blindly: a claim a crash lost after the flush failed is not sent', async () => {
    await addWorkstation(t.db, 'ws_no_blind', 'no-blind-rt', 1);
    const g = gated();
    g.release();
    let run: { id: string } | undefined;
    let failed = false;
    // The first flush fails and the server "restarts", having lost the claim (the run is queued
    // again); a flush sent again would succeed on the new server.
    const db: Database = {
      ...g.db,
      query: async (text, params) => {
        if (text.includes("'runt-flush'") && !failed) {
          failed = true;
          await t.db.query(
            `update runs set status = 'queued', workstation_id = null, lease_holder = null, fencing_token = null where id = $1`,
            [run!.id],
          );
          throw new Error('flush: connection lost');
        }
        return g.db.query(text, params);
      },
    };
    const scheduler = newScheduler(db, g.relay, {
      claimers: () => ({ holder: 'ws_no_blind/r1', leaseMs: 60_000 }),
    });
    try {
      run = await submit('no-blind-rt');
      await scheduler.pass();
      expect(g.sent).toHaveLength(backend === 'postgres' ? 0 : 1);
    } finally {
      await scheduler.stop();
    }
  });
});
