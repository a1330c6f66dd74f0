import { migrate } from '@runt/sql';
import { createTestDatabase, TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isLeaseError } from './errors.js';
import { createSqlLeaseStore, type LeaseStore } from './lease-store.js';
import { leaseMigrations } from './migrations.js';

/** Reference model of one resource's lease. `token` 0 = never claimed. */
interface Model {
  holder: string | null;
  token: number;
  live: boolean;
}
interface Real {
  store: LeaseStore;
  t: TestDatabase;
  resource: string;
}
type TokenPick = { kind: 'current' } | { kind: 'stale'; by: number } | { kind: 'future' };

const TTL = 60_000; // nothing expires by itself during a run; expiry is an explicit step
const holders = ['h0', 'h1', 'h2'] as const;

const pickToken = (m: Model, p: TokenPick): number =>
  Math.max(1, p.kind === 'current' ? m.token : p.kind === 'future' ? m.token + 1 : m.token - p.by);

const outcome = async <T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false }> => {
  try {
    return { ok: true, value: await p };
  } catch (e) {
    if (isLeaseError(e, 'runner-lease-conflict')) return { ok: false };
    throw e;
  }
};

/** Every step applies itself to both sides, then the stored row must say what the model says. */
abstract class Step implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  abstract apply(m: Model, r: Real): Promise<void>;
  async run(m: Model, r: Real) {
    await this.apply(m, r);
    await agree(m, r);
  }
}

class Claim extends Step {
  constructor(readonly holder: string) {
    super();
  }
  override async apply(m: Model, r: Real) {
    const got = await outcome(r.store.claim(r.resource, this.holder, TTL));
    if (m.holder === null || !m.live) {
      m.token += 1;
      m.holder = this.holder;
      m.live = true;
      expect(got).toMatchObject({ ok: true, value: { fencingToken: m.token, holder: this.holder } });
    } else if (m.holder === this.holder) {
      expect(got).toMatchObject({ ok: true, value: { fencingToken: m.token } }); // idempotent re-claim
    } else {
      expect(got.ok).toBe(false);
    }
  }
  override toString = () => `claim(${this.holder})`;
}

class Renew extends Step {
  constructor(
    readonly holder: string,
    readonly pick: TokenPick,
  ) {
    super();
  }
  override async apply(m: Model, r: Real) {
    const token = pickToken(m, this.pick);
    const got = await outcome(r.store.renew(r.resource, this.holder, token, TTL));
    expect(got.ok).toBe(m.holder === this.holder && m.live && token === m.token);
  }
  override toString = () => `renew(${this.holder}, ${JSON.stringify(this.pick)})`;
}

class Release extends Step {
  constructor(
    readonly holder: string,
    readonly pick: TokenPick,
  ) {
    super();
  }
  override async apply(m: Model, r: Real) {
    const token = pickToken(m, this.pick);
    const got = await r.store.release(r.resource, this.holder, token);
    const mine = m.holder === this.holder && token === m.token;
    expect(got !== undefined).toBe(mine);
    if (mine) {
      m.holder = null;
      m.live = false;
    }
  }
  override toString = () => `release(${this.holder}, ${JSON.stringify(this.pick)})`;
}

/** Time passes beyond the ttl: done by moving `expires_at` into the past instead of sleeping. */
class Expire extends Step {
  override async apply(m: Model, r: Real) {
    await r.t.db.query(
      `update leases set expires_at = clock_timestamp() - interval '1 second' where resource = $1`,
      [r.resource],
    );
    m.live = false;
  }
  override toString = () => 'expire';
}

class FencedWrite extends Step {
  constructor(readonly pick: TokenPick) {
    super();
  }
  override async apply(m: Model, r: Real) {
    const token = pickToken(m, this.pick);
    const got = await outcome(r.t.db.transaction((tx) => r.store.assertFenced(tx, r.resource, token)));
    expect(got.ok).toBe(m.holder !== null && m.live && token === m.token);
  }
  override toString = () => `fenced(${JSON.stringify(this.pick)})`;
}

class Sweep extends Step {
  override async apply(m: Model, r: Real) {
    const swept = (await r.store.sweepExpired({ limit: 1000 })).filter((l) => l.resource === r.resource);
    if (m.holder !== null && !m.live) {
      expect(swept.map((l) => [l.holder, l.fencingToken])).toEqual([[m.holder, m.token]]);
      m.holder = null;
    } else {
      expect(swept).toEqual([]);
    }
  }
  override toString = () => 'sweep';
}

async function agree(m: Model, r: Real) {
  const row = await r.store.get(r.resource);
  if (m.token === 0) return expect(row).toBeUndefined();
  expect(row).toMatchObject({ holder: m.holder, fencingToken: m.token, live: m.holder !== null && m.live });
}

const holderArb = fc.constantFrom(...holders);
const pickArb: fc.Arbitrary<TokenPick> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ kind: 'current' as const }) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 3 }).map((by) => ({ kind: 'stale' as const, by })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'future' as const }) },
);
const commandArbs = [
  holderArb.map((h) => new Claim(h)),
  fc.tuple(holderArb, pickArb).map(([h, p]) => new Renew(h, p)),
  fc.tuple(holderArb, pickArb).map(([h, p]) => new Release(h, p)),
  fc.constant(new Expire()),
  pickArb.map((p) => new FencedWrite(p)),
  fc.constant(new Sweep()),
];

describe.each(TEST_BACKENDS)('lease store properties on %s', (backend) => {
  let t: TestDatabase;
  let store: LeaseStore;
  let runs = 0;

  beforeAll(async () => {
    t = await createTestDatabase(backend);
    await migrate(t.db, leaseMigrations);
    store = createSqlLeaseStore(t.db);
  });
  afterAll(async () => {
    await t?.dispose();
  });

  it('agrees with the reference model on random claim/renew/release/expire/sweep sequences', async () => {
    await fc.assert(
      fc.asyncProperty(fc.commands(commandArbs, { maxCommands: 40 }), async (cmds) => {
        const real: Real = { store, t, resource: `prop_${++runs}` };
        const model: Model = { holder: null, token: 0, live: false };
        await fc.asyncModelRun(() => ({ model, real }), cmds);
      }),
      { numRuns: 60 },
    );
  });

  it('refuses every stale token for renew, release and fenced writes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ holder: holderArb, end: fc.constantFrom('release', 'expire', 'sweep') }), {
          minLength: 1,
          maxLength: 8,
        }),
        async (steps) => {
          const resource = `stale_${++runs}`;
          const granted: Array<{ holder: string; token: number }> = [];
          for (const s of steps) {
            const g = await store.claim(resource, s.holder, TTL);
            granted.push({ holder: s.holder, token: g.fencingToken });
            if (s.end === 'release') await store.release(resource, s.holder, g.fencingToken);
            else {
              await t.db.query(
                `update leases set expires_at = clock_timestamp() - interval '1 second' where resource = $1`,
                [resource],
              );
              if (s.end === 'sweep') await store.sweepExpired({ limit: 1000 });
            }
          }
          expect(granted.map((g) => g.token)).toEqual(granted.map((_, i) => i + 1));
          const current = await store.claim(resource, 'h_now', TTL);
          for (const old of granted) {
            expect(old.token).toBeLessThan(current.fencingToken);
            expect((await outcome(store.renew(resource, old.holder, old.token, TTL))).ok).toBe(false);
            expect(
              (await outcome(t.db.transaction((tx) => store.assertFenced(tx, resource, old.token)))).ok,
            ).toBe(false);
            expect(await store.release(resource, old.holder, old.token)).toBeUndefined();
          }
          expect(
            (await outcome(t.db.transaction((tx) => store.assertFenced(tx, resource, current.fencingToken))))
              .ok,
          ).toBe(true);
        },
      ),
      { numRuns: 40 },
    );
  });
});
