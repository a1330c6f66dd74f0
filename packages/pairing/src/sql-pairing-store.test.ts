import { migrate, openPostgres, type Database } from '@runt/sql';
import { createTestDatabase, TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPairingCode } from './hash-pairing-code.js';
import { normalizePairingCode } from './normalize-pairing-code.js';
import { isPairingError, PairingCodeRejectedError, PairingRateLimitedError } from './pairing-error.js';
import { pairingMigrations } from './pairing-migrations.js';
import type { IssueCredential, PairingStore } from './pairing-store.js';
import { createSqlPairingStore } from './sql-pairing-store.js';

const WORKSTATIONS =
  'create table workstations (id text primary key, pairing_id text not null, token_hash text not null)';

/** A real issue(): inserts the workstation row through the redeem transaction. */
function issuer(
  calls: string[] = [],
  opts: { hold?: boolean; fail?: boolean } = {},
): IssueCredential<string> {
  return async (tx, { pairingId }) => {
    const id = `ws_${calls.length + 1}_${Math.random().toString(36).slice(2, 8)}`;
    calls.push(pairingId);
    await tx.query('insert into workstations (id, pairing_id, token_hash) values ($1, $2, $3)', [
      id,
      pairingId,
      'hash',
    ]);
    // Hold the row lock a moment so that concurrent redeems really queue behind it.
    if (opts.hold) await tx.query('select pg_sleep(0.05)');
    if (opts.fail) throw new Error('credential table is full');
    return { workstationId: id, result: `token-for-${id}` };
  };
}

async function rejectionOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

describe.each(TEST_BACKENDS)('SQL pairing store on %s', (backend) => {
  let t: TestDatabase;
  let db: Database;
  let store: PairingStore;

  beforeAll(async () => {
    t = await createTestDatabase(backend);
    db = t.db;
    expect(await migrate(db, pairingMigrations)).toEqual([
      'pairing_0001_codes',
      'pairing_0002_attempt_prefix',
    ]);
    expect(await migrate(db, pairingMigrations)).toEqual([]);
    await db.query(WORKSTATIONS);
    store = createSqlPairingStore(db, {
      limits: { perAddress: { max: 3, windowMs: 60_000 }, overall: { max: 10_000, windowMs: 60_000 } },
    });
  });
  afterAll(async () => {
    await t?.dispose();
  });

  it('mints a formatted code that expires by the database clock, storing only its hash', async () => {
    const minted = await store.mint({ createdBy: 'admin' });
    expect(minted.code).toMatch(/^[2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{4}$/);
    const dbNow = (await db.query<{ now: Date }>('select now() as now')).rows[0]!.now;
    const ttl = minted.expiresAt.getTime() - new Date(dbNow).getTime();
    expect(ttl).toBeGreaterThan(590_000);
    expect(ttl).toBeLessThanOrEqual(600_000);

    const rows = (await db.query('select * from pairing_codes where id = $1', [minted.id])).rows;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      id: minted.id,
      code_hash: hashPairingCode(minted.code),
      created_by: 'admin',
      redeemed_at: null,
    });
    const dump = JSON.stringify((await db.query('select * from pairing_codes')).rows);
    expect(dump).not.toContain(minted.code);
    expect(dump).not.toContain(minted.code.replaceAll('-', ''));

    const info = await store.get(minted.id);
    expect(info).toEqual({ id: minted.id, createdBy: 'admin', expiresAt: minted.expiresAt, expired: false });
    expect(await store.get('no-such-id')).toBeUndefined();
  });

  it('honours a custom ttl and refuses nonsense arguments', async () => {
    const m = await store.mint({ createdBy: 'admin', ttlMs: 5_000 });
    const dbNow = new Date((await db.query<{ now: Date }>('select now() as now')).rows[0]!.now).getTime();
    expect(m.expiresAt.getTime() - dbNow).toBeLessThanOrEqual(5_000);
    expect(m.expiresAt.getTime() - dbNow).toBeGreaterThan(0);
    for (const bad of [
      { createdBy: '' },
      { createdBy: 'a', ttlMs: 0 },
      { createdBy: 'a', ttlMs: Number.NaN },
    ]) {
      expect(isPairingError(await rejectionOf(store.mint(bad)), 'invalid-argument')).toBe(true);
    }
  });

  it('redeems once, in the same transaction as issue(); a second redeem is rejected', async () => {
    const { id, code } = await store.mint({ createdBy: 'admin' });
    const calls: string[] = [];
    const result = await store.redeem(
      { code: code.toLowerCase().replaceAll('-', ' '), clientAddress: '10.0.0.1' },
      issuer(calls),
    );
    expect(calls).toEqual([id]);
    expect(result).toMatch(/^token-for-ws_1_/);
    const ws = (await db.query<{ id: string }>('select id from workstations where pairing_id = $1', [id]))
      .rows;
    expect(ws).toHaveLength(1);

    const info = await store.get(id);
    expect(info?.redeemedBy).toBe(ws[0]!.id);
    expect(info?.redeemedAt).toBeInstanceOf(Date);
    expect(info?.expired).toBe(false);

    const again = await rejectionOf(store.redeem({ code, clientAddress: '10.0.0.1' }, issuer(calls)));
    expect(again).toBeInstanceOf(PairingCodeRejectedError);
    expect((again as Error).message).toBe('pairing code is invalid, expired, or already used');
    expect(calls).toHaveLength(1);
  });

  it('keeps the code usable when issue() throws (nothing committed)', async () => {
    const { id, code } = await store.mint({ createdBy: 'admin' });
    const err = await rejectionOf(
      store.redeem({ code, clientAddress: '10.0.0.2' }, issuer([], { fail: true })),
    );
    expect((err as Error).message).toBe('credential table is full');
    expect((await db.query('select 1 from workstations where pairing_id = $1', [id])).rows).toHaveLength(0);
    expect((await store.get(id))?.redeemedAt).toBeUndefined();
    // A server-side failure is not the client's fault: it does not count against the address.
    expect(
      (await db.query("select 1 from pairing_attempts where client_address = '10.0.0.2'")).rows,
    ).toHaveLength(0);
    expect(await store.redeem({ code, clientAddress: '10.0.0.2' }, issuer())).toMatch(/^token-for-/);
  });

  it('rejects expired, unknown and malformed codes the same way, without calling issue()', async () => {
    const { id, code } = await store.mint({ createdBy: 'admin' });
    await db.query("update pairing_codes set expires_at = now() - interval '1 second' where id = $1", [id]);
    expect((await store.get(id))?.expired).toBe(true);
    const calls: string[] = [];
    for (const attempt of [code, 'ZZZZ-ZZZZ-ZZZZ', 'not a code']) {
      const e = await rejectionOf(
        store.redeem({ code: attempt, clientAddress: `10.0.1.${attempt.length}` }, issuer(calls)),
      );
      expect(isPairingError(e, 'pairing-code-rejected'), attempt).toBe(true);
      expect((e as Error).message).toBe('pairing code is invalid, expired, or already used');
    }
    expect(calls).toEqual([]);
    expect((await store.get(id))?.redeemedAt).toBeUndefined();
  });

  it('lets exactly one of 10 concurrent redeems of one code win', async () => {
    const { id, code } = await store.mint({ createdBy: 'admin' });
    const calls: string[] = [];
    const issue = issuer(calls, { hold: backend === 'postgres' });
    const outcomes = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => store.redeem({ code, clientAddress: `10.0.2.${i}` }, issue)),
    );
    const won = outcomes.filter((o) => o.status === 'fulfilled');
    const lost = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(9);
    for (const l of lost) expect(isPairingError(l.reason, 'pairing-code-rejected')).toBe(true);
    expect(calls).toEqual([id]);
    expect((await db.query('select 1 from workstations where pairing_id = $1', [id])).rows).toHaveLength(1);
  });

  it('rate-limits wrong guesses from an address after too many failures; a valid code still redeems from it', async () => {
    const addr = '192.0.2.10';
    const guesses = ['ZZZZ-ZZZZ-ZZZ2', 'YZZZ-ZZZZ-ZZZ2', 'XZZZ-ZZZZ-ZZZ2']; // different prefixes: only the address limit applies
    for (const guess of guesses) {
      expect(await rejectionOf(store.redeem({ code: guess, clientAddress: addr }, issuer()))).toBeInstanceOf(
        PairingCodeRejectedError,
      );
    }
    const limited = await rejectionOf(
      store.redeem({ code: 'WZZZ-ZZZZ-ZZZ2', clientAddress: addr }, issuer()),
    );
    expect(limited).toBeInstanceOf(PairingRateLimitedError);
    expect(isPairingError(limited, 'rate-limited')).toBe(true);
    const wait = (limited as PairingRateLimitedError).retryAfterSeconds;
    expect(wait).toBeGreaterThanOrEqual(1);
    expect(wait).toBeLessThanOrEqual(60);
    // Attempts while limited are not recorded again (a flood does not extend its own lockout).
    expect(
      (await db.query('select 1 from pairing_attempts where client_address = $1', [addr])).rows,
    ).toHaveLength(3);

    // A valid code always redeems, even from the limited address.
    const { id, code } = await store.mint({ createdBy: 'admin' });
    const calls: string[] = [];
    expect(await store.redeem({ code, clientAddress: addr }, issuer(calls))).toMatch(/^token-for-/);
    expect(calls).toEqual([id]);

    // Age the failures: Retry-After shrinks with them, and once out of the window wrong guesses are 404 again.
    await db.query(
      "update pairing_attempts set failed_at = failed_at - interval '50 seconds' where client_address = $1",
      [addr],
    );
    const later = (await rejectionOf(
      store.redeem({ code: 'VZZZ-ZZZZ-ZZZ2', clientAddress: addr }, issuer()),
    )) as PairingRateLimitedError;
    expect(later.retryAfterSeconds).toBeLessThanOrEqual(11);
    await db.query(
      "update pairing_attempts set failed_at = failed_at - interval '11 seconds' where client_address = $1",
      [addr],
    );
    expect(
      await rejectionOf(store.redeem({ code: 'VZZZ-ZZZZ-ZZZ2', clientAddress: addr }, issuer())),
    ).toBeInstanceOf(PairingCodeRejectedError);
  });

  it('limitGuesses spends the same budget as redeem: wrong guesses count, right ones do not', async () => {
    const addr = '192.0.2.30';
    expect(await store.limitGuesses(addr, async () => 'ok')).toBe('ok');
    expect(await store.limitGuesses(addr, async () => undefined)).toBeUndefined();
    expect(
      await rejectionOf(store.redeem({ code: 'ZZZZ-ZZZZ-ZZZ4', clientAddress: addr }, issuer())),
    ).toBeInstanceOf(PairingCodeRejectedError);
    expect(await store.limitGuesses(addr, async () => undefined)).toBeUndefined();
    // Three failures (two guesses, one redeem): even a right guess is refused now, and a wrong redeem too.
    let checked = false;
    const limited = await rejectionOf(store.limitGuesses(addr, async () => ((checked = true), 'ok')));
    expect(isPairingError(limited, 'rate-limited')).toBe(true);
    expect(checked).toBe(false);
    expect(
      await rejectionOf(store.redeem({ code: 'ZZZZ-ZZZZ-ZZZ6', clientAddress: addr }, issuer())),
    ).toBeInstanceOf(PairingRateLimitedError);
    // A valid pairing code is never locked out (it names a live, single-use, 59-bit secret).
    const { code } = await store.mint({ createdBy: 'admin' });
    expect(await store.redeem({ code, clientAddress: addr }, issuer())).toMatch(/^token-for-/);
  });

  it('does not count successful redeems', async () => {
    const addr = '192.0.2.20';
    for (let i = 0; i < 5; i++) {
      const { code } = await store.mint({ createdBy: 'admin' });
      expect(await store.redeem({ code, clientAddress: addr }, issuer())).toMatch(/^token-for-/);
    }
  });
});

describe.each(TEST_BACKENDS)('SQL pairing store on %s, own database', (backend) => {
  it('refuses nonsense limits, does not create its tables; a flood from many addresses locks out neither a valid code nor other prefixes (issue 8, defect 9)', async () => {
    const t = await createTestDatabase(backend);
    try {
      expect(() =>
        createSqlPairingStore(t.db, { limits: { perAddress: { max: 0, windowMs: 1000 } } }),
      ).toThrow(/perAddress/);
      expect(() =>
        createSqlPairingStore(t.db, {
          limits: { perAddress: { max: 1, windowMs: 1000 }, perPrefix: { max: 1, windowMs: 0 } },
        }),
      ).toThrow(/perPrefix/);
      const store = createSqlPairingStore(t.db, {
        limits: { perAddress: { max: 100, windowMs: 60_000 }, perPrefix: { max: 4, windowMs: 60_000 } },
      });
      // No migrations run by the store: its table does not exist yet.
      await expect(store.mint({ createdBy: 'admin' })).rejects.toThrow(/pairing_codes/);
      await migrate(t.db, pairingMigrations);
      await t.db.query(WORKSTATIONS);

      // 100 failed redeems from 100 addresses, all over one prefix and a spread of others.
      for (let i = 0; i < 100; i++) {
        const guess = i % 2 ? 'ZZZZ-ZZZZ-ZZZ3' : `${'23456789ABCDEFGHJKMNPQRSTVWXYZ'[i % 29]}ZZZ-ZZZZ-ZZZ3`;
        const e = await rejectionOf(
          store.redeem({ code: guess, clientAddress: `198.51.100.${i}` }, issuer()),
        );
        expect(isPairingError(e, 'pairing-code-rejected') || isPairingError(e, 'rate-limited')).toBe(true);
      }
      // The flooded prefix is limited for wrong guesses, from a fresh address too…
      expect(
        await rejectionOf(store.redeem({ code: 'ZZZZ-ZZZZ-ZZZ4', clientAddress: '203.0.113.1' }, issuer())),
      ).toBeInstanceOf(PairingRateLimitedError);
      // …but a valid code from a fresh address redeems, and so does a valid code whose prefix was flooded.
      const { code } = await store.mint({ createdBy: 'admin' });
      expect(await store.redeem({ code, clientAddress: '203.0.113.2' }, issuer())).toMatch(/^token-for-/);
      const second = await store.mint({ createdBy: 'admin' });
      const floodedPrefix = `ZZZZ-${second.code.slice(5)}`;
      await t.db.query('update pairing_codes set code_hash = $1 where id = $2', [
        hashPairingCode(normalizePairingCode(floodedPrefix)!),
        second.id,
      ]);
      expect(await store.redeem({ code: floodedPrefix, clientAddress: '203.0.113.3' }, issuer())).toMatch(
        /^token-for-/,
      );
      // A prefix nobody flooded still answers 404 for a wrong guess: no global lockout.
      expect(
        await rejectionOf(store.redeem({ code: '2222-ZZZZ-ZZZ5', clientAddress: '203.0.113.4' }, issuer())),
      ).toBeInstanceOf(PairingCodeRejectedError);
    } finally {
      await t.dispose();
    }
  });
});

describe('SQL pairing store, two replicas (two pools) on one postgres', () => {
  it('holds the per-address budget for wrong redeems and sign-in guesses sent at once, spread over both (never more than max accepted)', async () => {
    const t = await createTestDatabase('postgres');
    const other = await openPostgres({ url: t.url! });
    try {
      await migrate(t.db, pairingMigrations);
      await t.db.query(WORKSTATIONS);
      const limits = { perAddress: { max: 4, windowMs: 60_000 }, perPrefix: { max: 1000, windowMs: 60_000 } };
      const replicas = [createSqlPairingStore(t.db, { limits }), createSqlPairingStore(other, { limits })];
      const outcomes = async (tries: Array<() => Promise<unknown>>) => {
        const settled = await Promise.all(tries.map((f) => rejectionOf(f())));
        return {
          rejected: settled.filter((e) => e instanceof PairingCodeRejectedError).length,
          limited: settled.filter((e) => e instanceof PairingRateLimitedError).length,
        };
      };
      // 24 wrong codes from one address at once, alternating between the replicas.
      const redeems = await outcomes(
        Array.from(
          { length: 24 },
          (_, i) => () =>
            replicas[i % 2]!.redeem({ code: 'ZZZZ-ZZZZ-ZZZ3', clientAddress: '192.0.2.1' }, issuer()),
        ),
      );
      expect(redeems.rejected + redeems.limited).toBe(24);
      expect(redeems.rejected).toBeLessThanOrEqual(4);
      expect(redeems.limited).toBeGreaterThanOrEqual(20);
      // The same for sign-in guesses (limitGuesses) from another address.
      const wrong = () => new Promise<undefined>((r) => setTimeout(() => r(undefined), 5));
      const guesses = await Promise.all(
        Array.from({ length: 24 }, (_, i) =>
          replicas[i % 2]!.limitGuesses('192.0.2.2', wrong).then(
            () => 'wrong' as const,
            (e: unknown) => (e instanceof PairingRateLimitedError ? ('limited' as const) : e),
          ),
        ),
      );
      expect(guesses.filter((g) => g === 'wrong').length).toBeLessThanOrEqual(4);
      expect(guesses.filter((g) => g === 'limited').length).toBeGreaterThanOrEqual(20);
      // Sequentially, across replicas, the budget is exact: 4 wrong guesses, then 429 on either.
      for (let i = 0; i < 4; i++)
        expect(
          await rejectionOf(
            replicas[i % 2]!.redeem({ code: 'ZZZZ-ZZZZ-ZZZ4', clientAddress: '192.0.2.3' }, issuer()),
          ),
        ).toBeInstanceOf(PairingCodeRejectedError);
      for (const r of replicas)
        expect(
          await rejectionOf(r.redeem({ code: 'ZZZZ-ZZZZ-ZZZ4', clientAddress: '192.0.2.3' }, issuer())),
        ).toBeInstanceOf(PairingRateLimitedError);
      // A right sign-in guess spends nothing: the address stays usable.
      const right = await replicas[1]!.limitGuesses('192.0.2.4', () => Promise.resolve('ok'));
      expect(right).toBe('ok');
      expect(
        await rejectionOf(
          replicas[0]!.redeem({ code: 'ZZZZ-ZZZZ-ZZZ5', clientAddress: '192.0.2.4' }, issuer()),
        ),
      ).toBeInstanceOf(PairingCodeRejectedError);
    } finally {
      await other.close();
      await t.dispose();
    }
  });
});
