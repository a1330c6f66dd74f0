import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isLeaseError, type LeaseLostError, type LeaseRequestError } from '../src/errors.js';
import { claimedLeaseFrom } from '../src/held-lease.js';
import { LeaseClient } from '../src/lease-client.js';
import type { HeartbeatAnswer } from '../src/wire-schemas.js';
import { type LeaseTestServer, startLeaseTestServer, TEST_TOKEN } from './lease-test-server.js';

let server: LeaseTestServer;
let n = 0;
const runId = () => `run_${++n}`;
const client = (extra: Partial<ConstructorParameters<typeof LeaseClient>[0]> = {}) =>
  new LeaseClient({ baseUrl: server.url, token: TEST_TOKEN, retry: { baseMs: 20, capMs: 200 }, ...extra });

/** Resolves when `signal` aborts; fails the test after `ms` (a generous bound, not a timing claim). */
const aborted = (signal: AbortSignal, ms = 15_000) =>
  new Promise<unknown>((resolve, reject) => {
    if (signal.aborted) return resolve(signal.reason);
    const timer = setTimeout(() => reject(new Error('signal did not abort in time')), ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve(signal.reason);
    });
  });

const until = async (cond: () => boolean, ms = 15_000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
};

const expireOnServer = (id: string) =>
  server.t.db.query(
    `update leases set expires_at = clock_timestamp() - interval '1 second' where resource = $1`,
    [id],
  );

beforeAll(async () => {
  server = await startLeaseTestServer();
});
afterAll(async () => {
  await server?.close();
});

describe('LeaseClient over a real HTTP server', () => {
  it('claims with bearer auth, gets 409 as LeaseConflictError, and re-claims idempotently', async () => {
    const id = runId();
    const lease = await client().claim(id, { runnerId: 'ws_a', leaseMs: 30_000 });
    expect(lease).toMatchObject({
      runId: id,
      runnerId: 'ws_a',
      fencingToken: 1,
      leaseMs: 30_000,
      run: { id },
    });
    expect(lease.expiresAt.getTime()).toBeGreaterThan(Date.now());
    expect(server.calls.at(-1)?.auth).toBe(`Bearer ${TEST_TOKEN}`);

    const other = await client()
      .claim(id, { runnerId: 'ws_b', leaseMs: 30_000 })
      .catch((e) => e);
    expect(isLeaseError(other, 'runner-lease-conflict')).toBe(true);
    expect(other).toMatchObject({ name: 'LeaseConflictError', status: 409, resource: id });

    const again = await client().claim(id, { runnerId: 'ws_a', leaseMs: 30_000 });
    expect(again.fencingToken).toBe(lease.fencingToken);
  });

  it('fails fast on 401 and never sends a token it was not given', async () => {
    const before = server.calls.length;
    const e = (await client({ token: 'rnt_ws_wrong' })
      .claim(runId(), { runnerId: 'ws_a', leaseMs: 30_000 })
      .catch((x) => x)) as LeaseRequestError;
    expect(isLeaseError(e, 'lease-request-failed')).toBe(true);
    expect(e.status).toBe(401);
    expect(e.serverCode).toBe('unauthorized');
    expect(e.message).not.toContain('rnt_ws_wrong');
    expect(server.calls.length - before).toBe(1); // not retried
  });

  it('asks getToken for every request', async () => {
    let asked = 0;
    const c = client({ token: undefined, getToken: async () => (asked++, TEST_TOKEN) });
    const id = runId();
    const lease = await c.claim(id, { runnerId: 'ws_a', leaseMs: 30_000 });
    await c.renew(id, { runnerId: 'ws_a', fencingToken: lease.fencingToken, leaseMs: 30_000 });
    expect(await c.release(id, { runnerId: 'ws_a', fencingToken: lease.fencingToken })).toBe(true);
    expect(asked).toBe(3);
  });

  it('renews repeatedly with a short lease and keeps the signal quiet', async () => {
    const id = runId();
    const c = client();
    const lease = await c.claim(id, { runnerId: 'ws_a', leaseMs: 1500 });
    const reported: Date[] = [];
    const held = c.hold(id, lease, { minRenewIntervalMs: 100, onRenew: (at) => reported.push(at) });
    await until(() => held.renewals >= 4);
    expect(held.signal.aborted).toBe(false);
    expect(held.state).toBe('held');
    const row = await server.store.get(id);
    expect(row).toMatchObject({ holder: 'ws_a', fencingToken: lease.fencingToken, live: true });
    expect(row?.renewedAt).not.toBeNull();
    expect(reported.at(-1)!.getTime()).toBeGreaterThan(lease.expiresAt.getTime());
    held.stop();
    held.stop(); // idempotent
    const count = server.calls.filter((x) => x.runId === id && x.endpoint === 'heartbeat').length;
    await new Promise((r) => setTimeout(r, 500));
    expect(server.calls.filter((x) => x.runId === id && x.endpoint === 'heartbeat').length).toBe(count);
    expect(held.signal.aborted).toBe(false); // stop() is not a loss
    expect(held.state).toBe('stopped');
  });

  it('fires the lost signal when the control plane refuses a renewal (lease taken over)', async () => {
    const id = runId();
    const c = client();
    const lease = await c.claim(id, { runnerId: 'ws_a', leaseMs: 1000 });
    const held = c.hold(id, lease, { minRenewIntervalMs: 300 });
    // The lease runs out on the server and another runner takes it before ws_a's next heartbeat.
    await expireOnServer(id);
    const thief = await server.store.claim(id, 'ws_b', 30_000);
    expect(thief.fencingToken).toBe(lease.fencingToken + 1);
    const reason = (await aborted(held.signal)) as LeaseLostError;
    expect(isLeaseError(reason, 'lease-lost')).toBe(true);
    expect(reason).toMatchObject({
      name: 'LeaseLostError',
      reason: 'refused',
      resource: id,
      fencingToken: lease.fencingToken,
    });
    expect(held.state).toBe('lost');
    expect(await held.release()).toBe(false); // not ours any more: 409 on release
    expect((await server.store.get(id))?.holder).toBe('ws_b');
  });

  it('tells onLost once, with the reason the signal gets when it is first read after the loss', async () => {
    const id = runId();
    const c = client();
    const lease = await c.claim(id, { runnerId: 'ws_a', leaseMs: 1000 });
    const told: LeaseLostError[] = [];
    const held = c.hold(id, lease, { minRenewIntervalMs: 300, onLost: (reason) => told.push(reason) });
    await expireOnServer(id);
    await server.store.claim(id, 'ws_b', 30_000);
    await until(() => told.length > 0);
    expect(told[0]).toMatchObject({ name: 'LeaseLostError', reason: 'refused', resource: id });
    expect(held.state).toBe('lost');
    // Never read before the loss: made aborted, with the same reason.
    expect(held.signal.aborted).toBe(true);
    expect(held.signal.reason).toBe(told[0]);
    await new Promise((r) => setTimeout(r, 400));
    expect(told).toHaveLength(1);
  });

  it('fires the lost signal with reason expired when no renewal succeeds before the local deadline', async () => {
    const id = runId();
    const c = client();
    const lease = await c.claim(id, { runnerId: 'ws_a', leaseMs: 1000 });
    server.canned.heartbeat.push(...Array.from({ length: 200 }, () => ({ status: 503 })));
    const held = c.hold(id, lease, { minRenewIntervalMs: 100 });
    try {
      const reason = (await aborted(held.signal)) as LeaseLostError;
      expect(reason).toMatchObject({ code: 'lease-lost', reason: 'expired' });
      expect(isLeaseError((reason as Error).cause, 'lease-request-failed')).toBe(true);
      // Retried (with backoff) before giving up.
      expect(server.calls.filter((x) => x.runId === id && x.endpoint === 'heartbeat').length).toBeGreaterThan(
        1,
      );
    } finally {
      server.canned.heartbeat.length = 0;
    }
  });

  it('loses the lease with reason failed when a renewal is refused for good (401)', async () => {
    const id = runId();
    let token = TEST_TOKEN;
    const c = client({ token: undefined, getToken: () => token });
    const lease = await c.claim(id, { runnerId: 'ws_a', leaseMs: 1500 });
    token = 'rnt_ws_revoked';
    const held = c.hold(id, lease, { minRenewIntervalMs: 100 });
    const reason = (await aborted(held.signal)) as LeaseLostError;
    expect(reason).toMatchObject({ code: 'lease-lost', reason: 'failed' });
    expect((reason as Error).cause).toMatchObject({ code: 'lease-request-failed', status: 401 });
  });

  it('reports a blocked event loop as an expired lease, never as a silent overrun', async () => {
    const id = runId();
    const c = client();
    const lease = await c.claim(id, { runnerId: 'ws_a', leaseMs: 1000 });
    const held = c.hold(id, lease, { minRenewIntervalMs: 100 });
    const blockedUntil = Date.now() + 1300;
    while (Date.now() < blockedUntil) Math.sqrt(Math.random()); // the work forgot to yield
    const reason = (await aborted(held.signal)) as LeaseLostError;
    expect(reason).toMatchObject({ code: 'lease-lost', reason: 'expired' });
    expect(server.calls.filter((x) => x.runId === id && x.endpoint === 'heartbeat')).toEqual([]);
  });

  it('honours 429 Retry-After on a renewal and keeps the lease', async () => {
    const id = runId();
    const c = client();
    const lease = await c.claim(id, { runnerId: 'ws_a', leaseMs: 6000 });
    server.canned.heartbeat.push({ status: 429, retryAfter: '1' });
    const held = c.hold(id, lease, { minRenewIntervalMs: 100 });
    await until(() => held.renewals >= 1);
    const beats = server.calls.filter((x) => x.runId === id && x.endpoint === 'heartbeat');
    expect(beats.map((b) => b.status).slice(0, 2)).toEqual([429, 200]);
    expect(beats[1]!.at - beats[0]!.at).toBeGreaterThanOrEqual(950);
    expect(held.signal.aborted).toBe(false);
    held.stop();
  });

  it('retries a claim after 429 Retry-After and after 503', async () => {
    const id = runId();
    server.canned.claim.push({ status: 429, retryAfter: '1' }, { status: 503 });
    const lease = await client().claim(id, { runnerId: 'ws_a', leaseMs: 30_000 });
    const claims = server.calls.filter((x) => x.runId === id && x.endpoint === 'claim');
    expect(claims.map((x) => x.status)).toEqual([429, 503, 200]);
    expect(claims[1]!.at - claims[0]!.at).toBeGreaterThanOrEqual(950);
    expect(lease.fencingToken).toBe(1);
  });

  it('gives up a claim after its attempts, with the last error', async () => {
    const id = runId();
    server.canned.claim.push({ status: 503 }, { status: 503 }, { status: 503 });
    const e = (await client()
      .claim(id, { runnerId: 'ws_a', leaseMs: 30_000 })
      .catch((x) => x)) as LeaseRequestError;
    expect(e).toMatchObject({ code: 'lease-request-failed', status: 503 });
    expect(server.calls.filter((x) => x.runId === id).length).toBe(3);
  });

  it('withLease hands fn the held lease and its signal, then releases', async () => {
    const id = runId();
    const c = client();
    const out = await c.withLease(
      id,
      { runnerId: 'ws_a', leaseMs: 1200, minRenewIntervalMs: 100 },
      async (lease) => {
        expect(lease.signal).toBeInstanceOf(AbortSignal);
        expect(lease.signal.aborted).toBe(false);
        const row = await server.store.get(id);
        expect(row).toMatchObject({ holder: 'ws_a', fencingToken: lease.fencingToken, live: true });
        await until(() => lease.renewals >= 2);
        return lease.fencingToken;
      },
    );
    expect(out).toBe(1);
    expect((await server.store.get(id))?.holder).toBeNull();
    expect(server.calls.filter((x) => x.runId === id).at(-1)).toMatchObject({
      endpoint: 'release',
      status: 200,
    });
  });

  it('keeps renewing while fn does CPU-heavy work in slices that yield to the event loop', async () => {
    const id = runId();
    const c = client();
    await c.withLease(id, { runnerId: 'ws_a', leaseMs: 1200, minRenewIntervalMs: 100 }, async (lease) => {
      const end = Date.now() + 2000;
      while (Date.now() < end) {
        const slice = Date.now() + 40;
        while (Date.now() < slice) Math.sqrt(Math.random()); // busy: 40 ms without yielding
        await new Promise((r) => setImmediate(r));
      }
      expect(lease.signal.aborted).toBe(false);
      expect(lease.renewals).toBeGreaterThanOrEqual(3);
    });
  });

  it('withLease releases when fn throws and rejects with its error', async () => {
    const id = runId();
    await expect(
      client().withLease(id, { runnerId: 'ws_a', leaseMs: 30_000 }, async () => {
        throw new Error('workload failed');
      }),
    ).rejects.toThrow('workload failed');
    expect((await server.store.get(id))?.holder).toBeNull();
    // Released: the next runner gets the lease at once, with the next token.
    expect((await client().claim(id, { runnerId: 'ws_b', leaseMs: 30_000 })).fencingToken).toBe(2);
  });

  it('withLease lets fn observe a lost lease through the signal', async () => {
    const id = runId();
    const c = client();
    const err = await c
      .withLease(id, { runnerId: 'ws_a', leaseMs: 1000, minRenewIntervalMs: 300 }, async (lease) => {
        await expireOnServer(id);
        await server.store.claim(id, 'ws_b', 30_000);
        await aborted(lease.signal);
        lease.signal.throwIfAborted();
      })
      .catch((e) => e);
    expect(err).toMatchObject({ name: 'LeaseLostError', reason: 'refused' });
    expect((await server.store.get(id))?.holder).toBe('ws_b'); // our release did not touch ws_b's lease
  });

  it('rejects an unexpected success body and a client without credentials', async () => {
    expect(() => new LeaseClient({ baseUrl: server.url })).toThrow(/token or getToken/);
    const bad = new LeaseClient({
      baseUrl: server.url,
      token: TEST_TOKEN,
      fetch: async () =>
        new Response(JSON.stringify({ fencing_token: 'x' }), {
          status: 200,
          headers: { 'content-type': 'application/json' },
        }),
    });
    await expect(bad.claim(runId(), { runnerId: 'ws_a', leaseMs: 30_000 })).rejects.toMatchObject({
      code: 'lease-request-failed',
      status: 200,
    });
  });

  it('rejects a lease too short for the renew interval', async () => {
    const id = runId();
    const c = client();
    const lease = await c.claim(id, { runnerId: 'ws_a', leaseMs: 1500 });
    expect(() => c.hold(id, lease)).toThrow(/at least twice/);
    await expect(
      c.withLease(runId(), { runnerId: 'ws_a', leaseMs: 1500 }, async () => 1),
    ).rejects.toMatchObject({
      code: 'lease-invalid-argument',
    });
  });
});

describe('LeaseClient retry limits', () => {
  it('rejects at once with retryAfterMs when Retry-After exceeds maxRetryAfterMs', async () => {
    const id = runId();
    server.canned.claim.push({ status: 429, retryAfter: '120' });
    const c = client({ retry: { baseMs: 20, capMs: 200, maxRetryAfterMs: 5_000 } });
    const e = (await c.claim(id, { runnerId: 'ws_a', leaseMs: 30_000 }).catch((x) => x)) as LeaseRequestError;
    expect(e).toMatchObject({ code: 'lease-request-failed', status: 429, retryAfterMs: 120_000 });
  });
});

describe("LeaseClient passes the control plane's own answer fields through", () => {
  it('keeps the whole claim answer on the lease', async () => {
    const id = runId();
    server.extra.claim = { next_event_seq: 5, pending_commands: false };
    try {
      const lease = await client().claim(id, { runnerId: 'ws_a', leaseMs: 30_000 });
      expect(lease.run).toEqual({ id, status: 'accepted' });
      expect(lease.answer).toMatchObject({
        fencing_token: lease.fencingToken,
        run: { id },
        next_event_seq: 5,
        pending_commands: false,
      });
    } finally {
      server.extra.claim = {};
    }
  });

  it('hands onRenew the whole heartbeat answer', async () => {
    const id = runId();
    const c = client();
    const lease = await c.claim(id, { runnerId: 'ws_a', leaseMs: 1500 });
    server.extra.heartbeat = { cancel_requested: true };
    const answers: HeartbeatAnswer[] = [];
    const held = c.hold(id, lease, {
      minRenewIntervalMs: 100,
      onRenew: (at, answer) => {
        expect(answer.expires_at).toBe(at.toISOString());
        answers.push(answer);
      },
    });
    try {
      await until(() => answers.length >= 1);
      expect(answers[0]).toMatchObject({ cancel_requested: true });
      expect(held.signal.aborted).toBe(false);
    } finally {
      server.extra.heartbeat = {};
      held.stop();
    }
  });

  it('keeps a held lease’s stop and release working when taken off it; its renew loop stays private', async () => {
    const c = client();
    const [a, b] = [runId(), runId()];
    const heldA = c.hold(a, await c.claim(a, { runnerId: 'ws_a', leaseMs: 1500 }), {
      minRenewIntervalMs: 100,
    });
    const heldB = c.hold(b, await c.claim(b, { runnerId: 'ws_a', leaseMs: 1500 }), {
      minRenewIntervalMs: 100,
    });
    const { stop } = heldA;
    const { release } = heldB;
    stop();
    expect(heldA.state).toBe('stopped');
    expect(await release()).toBe(true);
    expect(heldB.state).toBe('stopped');
    expect((await server.store.get(b))?.live).toBe(false);
    for (const held of [heldA, heldB]) {
      expect('renew' in held).toBe(false);
      expect('onDeadline' in held).toBe(false);
    }
  });

  it('holds a lease claimed by another client (claimedLeaseFrom) and releases it', async () => {
    const id = runId();
    const c = client();
    server.extra.claim = { next_event_seq: 1 };
    const claimedAt = performance.now();
    let answer: unknown;
    try {
      const res = await fetch(`${server.url}/api/runs/${id}/claim`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ runner_id: 'ws_a', lease_ms: 1500 }),
      });
      expect(res.status).toBe(200);
      answer = await res.json();
    } finally {
      server.extra.claim = {};
    }
    const lease = claimedLeaseFrom(id, answer, { runnerId: 'ws_a', leaseMs: 1500, claimedAt });
    expect(lease).toMatchObject({
      runId: id,
      runnerId: 'ws_a',
      fencingToken: 1,
      leaseMs: 1500,
      claimedAt,
      run: { id },
      answer: { next_event_seq: 1 },
    });
    const held = c.hold(id, lease, { minRenewIntervalMs: 100 });
    await until(() => held.renewals >= 2);
    expect(held.signal.aborted).toBe(false);
    expect(await held.release()).toBe(true);
    expect((await server.store.get(id))?.live).toBe(false);
  });

  it('claimedLeaseFrom rejects what is not a claim answer', () => {
    const opts = { runnerId: 'ws_a', leaseMs: 30_000, claimedAt: performance.now() };
    const bad = [
      { expires_at: new Date().toISOString() },
      { fencing_token: 0, expires_at: new Date().toISOString() },
      'nope',
    ];
    for (const answer of bad) {
      expect(() => claimedLeaseFrom('run_x', answer, opts)).toThrow(
        expect.objectContaining({ code: 'lease-invalid-argument' }),
      );
    }
    const ok = { fencing_token: 3, expires_at: new Date().toISOString() };
    expect(() => claimedLeaseFrom('run_x', ok, { ...opts, claimedAt: performance.now() + 60_000 })).toThrow(
      expect.objectContaining({ code: 'lease-invalid-argument' }),
    );
    expect(claimedLeaseFrom('run_x', ok, opts)).toMatchObject({
      fencingToken: 3,
      run: undefined,
      answer: ok,
    });
  });
});
