import { migrate } from '@runt/sql';
import { createTestDatabase, TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isLeaseError, type LeaseConflictError } from './errors.js';
import { createSqlLeaseStore, leaseSql, releaseLease, type LeaseStore } from './lease-store.js';
import { leaseMigrations } from './migrations.js';

const conflictReason = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (e) {
    if (isLeaseError(e, 'runner-lease-conflict')) return (e as LeaseConflictError).reason;
    throw e;
  }
  throw new Error('expected a LeaseConflictError');
};

describe.each(TEST_BACKENDS)('sql lease store on %s', (backend) => {
  let t: TestDatabase;
  let store: LeaseStore;
  let n = 0;
  const resource = () => `run_${backend}_${++n}`;
  const expire = (r: string) =>
    t.db.query(`update leases set expires_at = clock_timestamp() - interval '1 second' where resource = $1`, [
      r,
    ]);

  beforeAll(async () => {
    t = await createTestDatabase(backend);
    await migrate(t.db, leaseMigrations);
    store = createSqlLeaseStore(t.db);
  });
  afterAll(async () => {
    await t?.dispose();
  });

  it('claims several leases in one statement with `from`, each by the same rules', async () => {
    const [a, b, c] = [resource(), resource(), resource()];
    await store.claim(b, 'other', 30_000); // held by another: refused
    await store.claim(c, 'ws_m', 30_000); // the same holder again: keeps its token
    const sql = `with l as (${leaseSql.claim({
      resource: 'p.r',
      holder: 'p.h',
      ttlMs: 'p.ttl',
      from: 'jsonb_to_recordset($1::jsonb) as p(r text, h text, ttl float8)',
    })}) select resource, holder, fencing_token from l order by resource`;
    const items = [a, b, c].map((r) => ({ r, h: 'ws_m', ttl: 30_000 }));
    const got = (
      await t.db.query<{ resource: string; fencing_token: string | number }>(sql, [JSON.stringify(items)])
    ).rows;
    expect(got.map((g) => [g.resource, Number(g.fencing_token)])).toEqual(
      [
        [a, 1],
        [c, 1],
      ].sort(),
    );
    expect((await store.get(b))!.holder).toBe('other');
    expect((await store.get(a))!.live).toBe(true);
  });

  it("exports its statements as fragments that keep the same rules inside a caller's statement", async () => {
    const r = resource();
    const claimWhen = (when: string) =>
      t.db.query<{ holder: string; fencing_token: string | number }>(
        `with l as (${leaseSql.claim({ resource: '$1', holder: '$2', ttlMs: '$3', when })}) select holder, fencing_token from l`,
        [r, 'ws_a', 30_000],
      );
    expect((await claimWhen('false')).rows).toEqual([]);
    expect(await store.get(r)).toBeUndefined();
    const granted = (await claimWhen('true')).rows[0]!;
    expect({ holder: granted.holder, token: Number(granted.fencing_token) }).toEqual({
      holder: 'ws_a',
      token: 1,
    });
    const live = (p: string) =>
      t.db.query<{ ok: boolean }>(`select ${leaseSql.heldWithToken({ resource: '$1', token: '$2' })} as ok`, [
        r,
        Number(p),
      ]);
    expect((await live('1')).rows[0]!.ok).toBe(true);
    expect((await live('2')).rows[0]!.ok).toBe(false);
    // another holder's claim through the fragment is refused like the store's own
    expect(await conflictReason(store.claim(r, 'ws_b', 30_000))).toBe('held');
    expect(await releaseLease(t.db, r, 'ws_b', 1)).toBeUndefined();
    expect(await releaseLease(t.db, r, 'ws_a', 1)).toMatchObject({
      resource: r,
      holder: null,
      fencingToken: 1,
    });
    expect((await live('1')).rows[0]!.ok).toBe(false);
    expect((await store.claim(r, 'ws_b', 30_000)).fencingToken).toBe(2);
  });

  it('claims, refuses another holder, and re-claims idempotently for the same holder', async () => {
    const r = resource();
    const a = await store.claim(r, 'ws_a', 30_000);
    expect(a).toMatchObject({ resource: r, holder: 'ws_a', fencingToken: 1, renewedAt: null });
    expect(a.expiresAt.getTime()).toBeGreaterThan(a.acquiredAt.getTime());
    expect(await conflictReason(store.claim(r, 'ws_b', 30_000))).toBe('held');

    const again = await store.claim(r, 'ws_a', 60_000);
    expect(again.fencingToken).toBe(1);
    expect(again.acquiredAt).toEqual(a.acquiredAt);
    expect(again.expiresAt.getTime()).toBeGreaterThan(a.expiresAt.getTime());
    expect(await store.get(r)).toMatchObject({ holder: 'ws_a', fencingToken: 1, live: true });
  });

  it('renews with holder and current token only', async () => {
    const r = resource();
    const a = await store.claim(r, 'ws_a', 30_000);
    const renewed = await store.renew(r, 'ws_a', a.fencingToken, 60_000);
    expect(renewed.fencingToken).toBe(a.fencingToken);
    expect(renewed.renewedAt).not.toBeNull();
    expect(renewed.expiresAt.getTime()).toBeGreaterThan(a.expiresAt.getTime());
    expect(await conflictReason(store.renew(r, 'ws_b', a.fencingToken, 30_000))).toBe('held');
    expect(await conflictReason(store.renew(r, 'ws_a', a.fencingToken + 1, 30_000))).toBe('stale-token');
    expect(await conflictReason(store.renew('never-claimed', 'ws_a', 1, 30_000))).toBe('not-held');
  });

  it('keeps the token monotonic across release, and release is a no-op for a non-holder', async () => {
    const r = resource();
    const a = await store.claim(r, 'ws_a', 30_000);
    expect(await store.release(r, 'ws_b', a.fencingToken)).toBeUndefined();
    const released = await store.release(r, 'ws_a', a.fencingToken);
    expect(released).toMatchObject({ holder: null, fencingToken: a.fencingToken });
    expect(released!.expiresAt.getTime()).toBeLessThanOrEqual(a.expiresAt.getTime());
    expect(await store.release(r, 'ws_a', a.fencingToken)).toBeUndefined();
    expect(await store.get(r)).toMatchObject({ holder: null, fencingToken: 1, live: false });
    expect(await conflictReason(store.renew(r, 'ws_a', a.fencingToken, 30_000))).toBe('not-held');

    const b = await store.claim(r, 'ws_b', 30_000);
    expect(b.fencingToken).toBe(2);
    expect(b.acquiredAt.getTime()).toBeGreaterThanOrEqual(released!.expiresAt.getTime());
    const a2 = await store.claim(r, 'ws_a', 30_000).catch((e) => e);
    expect(isLeaseError(a2, 'runner-lease-conflict')).toBe(true);
  });

  it('judges expiry by the database clock: an expired lease is taken over with a new token and cannot be renewed', async () => {
    const r = resource();
    const a = await store.claim(r, 'ws_a', 30_000);
    await expire(r);
    expect(await store.get(r)).toMatchObject({ holder: 'ws_a', live: false });
    expect(await conflictReason(store.renew(r, 'ws_a', a.fencingToken, 30_000))).toBe('expired');
    // The same holder re-claiming after expiry gets a NEW token: its old writes must not pass.
    const a2 = await store.claim(r, 'ws_a', 30_000);
    expect(a2.fencingToken).toBe(a.fencingToken + 1);
    await expire(r);
    const b = await store.claim(r, 'ws_b', 30_000);
    expect(b.fencingToken).toBe(a.fencingToken + 2);
    expect(await conflictReason(store.renew(r, 'ws_a', a2.fencingToken, 30_000))).toBe('stale-token');
    // A tiny ttl really expires without help.
    const c = resource();
    await store.claim(c, 'ws_a', 1);
    await new Promise((res) => setTimeout(res, 20));
    expect((await store.claim(c, 'ws_b', 30_000)).fencingToken).toBe(2);
  });

  it('assertFenced passes the current live token and refuses stale, released and expired ones', async () => {
    const r = resource();
    const a = await store.claim(r, 'ws_a', 30_000);
    const rec = await t.db.transaction((tx) => store.assertFenced(tx, r, a.fencingToken));
    expect(rec).toMatchObject({ holder: 'ws_a', fencingToken: a.fencingToken });
    expect(
      await conflictReason(t.db.transaction((tx) => store.assertFenced(tx, r, a.fencingToken + 1))),
    ).toBe('stale-token');
    expect(await conflictReason(t.db.transaction((tx) => store.assertFenced(tx, 'nope', 1)))).toBe(
      'not-held',
    );
    await expire(r);
    expect(await conflictReason(t.db.transaction((tx) => store.assertFenced(tx, r, a.fencingToken)))).toBe(
      'expired',
    );
    const b = await store.claim(r, 'ws_b', 30_000);
    expect(await conflictReason(t.db.transaction((tx) => store.assertFenced(tx, r, a.fencingToken)))).toBe(
      'stale-token',
    );
    await store.release(r, 'ws_b', b.fencingToken);
    expect(await conflictReason(t.db.transaction((tx) => store.assertFenced(tx, r, b.fencingToken)))).toBe(
      'not-held',
    );
  });

  it('a fenced write rolls back with the transaction when the fence refuses', async () => {
    await t.db.query('create table if not exists fenced_events (resource text, token bigint)');
    const r = resource();
    const a = await store.claim(r, 'ws_a', 30_000);
    const write = (token: number) =>
      t.db.transaction(async (tx) => {
        await tx.query('insert into fenced_events values ($1, $2)', [r, token]);
        await store.assertFenced(tx, r, token);
      });
    await write(a.fencingToken);
    await expire(r);
    await store.claim(r, 'ws_b', 30_000);
    await expect(write(a.fencingToken)).rejects.toMatchObject({ code: 'runner-lease-conflict' });
    const rows = await t.db.query<{ token: number }>('select token from fenced_events where resource = $1', [
      r,
    ]);
    expect(rows.rows.map((x) => Number(x.token))).toEqual([a.fencingToken]);
  });

  it('lists and sweeps expired held leases, keeping their tokens', async () => {
    await t.db.query(`update leases set holder = null where holder is not null`);
    const [r1, r2, r3] = [resource(), resource(), resource()];
    const l1 = await store.claim(r1, 'ws_a', 30_000);
    await store.claim(r2, 'ws_b', 30_000);
    const l3 = await store.claim(r3, 'ws_c', 30_000);
    await store.release(r3, 'ws_c', l3.fencingToken);
    await expire(r1);
    await expire(r3);
    expect((await store.listExpired()).map((l) => [l.resource, l.holder])).toEqual([[r1, 'ws_a']]);
    const swept = await t.db.transaction((tx) => store.sweepExpired({ tx, limit: 10 }));
    expect(swept.map((l) => [l.resource, l.holder, l.fencingToken])).toEqual([[r1, 'ws_a', l1.fencingToken]]);
    expect(await store.listExpired()).toEqual([]);
    expect(await store.sweepExpired()).toEqual([]);
    expect(await store.get(r1)).toMatchObject({ holder: null, fencingToken: l1.fencingToken });
    expect(await conflictReason(store.renew(r1, 'ws_a', l1.fencingToken, 30_000))).toBe('not-held');
    expect((await store.claim(r1, 'ws_b', 30_000)).fencingToken).toBe(l1.fencingToken + 1);
  });

  it('rejects invalid arguments with lease-invalid-argument', async () => {
    for (const p of [
      store.claim('', 'ws_a', 1000),
      store.claim('r', '', 1000),
      store.claim('r', 'ws_a', 0),
      store.claim('r', 'ws_a', 1.5),
      store.renew('r', 'ws_a', 0, 1000),
      store.release('r', 'ws_a', -1),
    ]) {
      await expect(p).rejects.toMatchObject({ name: 'LeaseError', code: 'lease-invalid-argument' });
    }
  });
});

describe('assertFenced on postgres', () => {
  it('holds the lease row until the fenced transaction ends, so a takeover waits for it', async () => {
    const t = await createTestDatabase('postgres');
    try {
      await migrate(t.db, leaseMigrations);
      const store = createSqlLeaseStore(t.db);
      // Short enough to run out while the fenced transaction is still open.
      const a = await store.claim('run_x', 'ws_a', 300);
      let releaseTx!: () => void;
      const gate = new Promise<void>((res) => (releaseTx = res));
      let fenced!: () => void;
      const fencedOnce = new Promise<void>((res) => (fenced = res));
      const tx = t.db.transaction(async (q) => {
        await store.assertFenced(q, 'run_x', a.fencingToken);
        fenced();
        await gate;
      });
      await fencedOnce;
      await new Promise((res) => setTimeout(res, 400));
      let settled = false;
      const takeover = store.claim('run_x', 'ws_b', 30_000).finally(() => (settled = true));
      await new Promise((res) => setTimeout(res, 300));
      expect(settled).toBe(false);
      releaseTx();
      await tx;
      expect((await takeover).fencingToken).toBe(a.fencingToken + 1);
    } finally {
      await t.dispose();
    }
  });
});
