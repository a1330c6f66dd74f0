import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { getConnInfo } from '@hono/node-server/conninfo';
import { migrate } from '@runt/sql';
import { createTestDatabase, type TestDatabase } from '@runt/sql/testing';
import { hashToken, mintToken, parseToken } from '@runt/transport-auth';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPairingError, PairingCodeRejectedError, PairingRateLimitedError } from './pairing-error.js';
import { pairingMigrations } from './pairing-migrations.js';
import type { PairingStore } from './pairing-store.js';
import { redeemPairingCode } from './redeem-pairing-code.js';
import { createSqlPairingStore } from './sql-pairing-store.js';

let t: TestDatabase;
let store: PairingStore;
let server: ServerType;
let base: string;
let requests = 0;

/** The redeem route the way a control plane would write it: store errors → 404 / 429. */
function redeemRoute(s: PairingStore): Hono {
  const app = new Hono();
  app.post('/api/workstations/pairing-codes/redeem', async (c) => {
    const body = await c.req.json<{ code: string; display_name?: string; hostname?: string }>();
    const displayName = body.display_name ?? body.hostname ?? 'workstation';
    const out = await s.redeem(
      { code: body.code, clientAddress: getConnInfo(c).remote.address ?? '' },
      async (tx, { pairingId }) => {
        const token = mintToken('workstation');
        const id = `ws_${pairingId.slice(0, 8)}`;
        await tx.query('insert into workstations (id, display_name, token_hash) values ($1, $2, $3)', [
          id,
          displayName,
          hashToken(token),
        ]);
        return {
          workstationId: id,
          result: {
            credential: { token, credential_id: `cred_${id}` },
            workstation: { id, display_name: displayName },
          },
        };
      },
    );
    return c.json(out, 201);
  });
  app.onError((e, c) => {
    if (isPairingError(e, 'pairing-code-rejected'))
      return c.json({ error: { code: e.code, message: e.message } }, 404);
    if (e instanceof PairingRateLimitedError) {
      c.header('Retry-After', String(e.retryAfterSeconds));
      return c.json({ error: { code: e.code, message: e.message } }, 429);
    }
    return c.json({ error: { code: 'internal', message: 'internal error' } }, 500);
  });
  return app;
}

beforeAll(async () => {
  t = await createTestDatabase('pglite');
  await migrate(t.db, pairingMigrations);
  await t.db.query(
    'create table workstations (id text primary key, display_name text not null, token_hash text not null)',
  );
  store = createSqlPairingStore(t.db, {
    limits: { perAddress: { max: 1000, windowMs: 60_000 }, overall: { max: 1000, windowMs: 60_000 } },
  });
  // Shares the attempts table: one failure from 127.0.0.1 is enough to be limited here.
  const strict = createSqlPairingStore(t.db, {
    limits: { perAddress: { max: 1, windowMs: 60_000 }, overall: { max: 1000, windowMs: 60_000 } },
  });

  const app = new Hono();
  app.use('*', async (_c, next) => {
    requests++;
    await next();
  });
  app.route('/', redeemRoute(store));
  app.route('/strict', redeemRoute(strict));
  app.post('/broken/api/workstations/pairing-codes/redeem', (c) =>
    c.json({ error: { code: 'internal', message: 'database is down\nsee logs' } }, 500),
  );
  app.post('/proxy/api/workstations/pairing-codes/redeem', (c) => c.text('<html>bad gateway</html>', 502));
  app.post('/weird/api/workstations/pairing-codes/redeem', (c) => c.json({ ok: true }, 201));
  app.post('/bare429/api/workstations/pairing-codes/redeem', (c) =>
    c.json({ error: { code: 'rate-limited', message: 'x' } }, 429),
  );
  await new Promise<void>((ready) => {
    server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => ready());
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((done) => server?.close(() => done()));
  await t?.dispose();
});

async function rejectionOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

describe('redeemPairingCode against a listening server', () => {
  it('redeems a code and returns the credential (only its hash is stored server-side)', async () => {
    const { id, code } = await store.mint({ createdBy: 'admin' });
    const out = await redeemPairingCode(`${base}/`, code.toLowerCase(), { hostname: 'build-01' });
    expect(parseToken(out.credential.token)?.kind).toBe('workstation');
    expect(out.workstation).toEqual({ id: `ws_${id.slice(0, 8)}`, display_name: 'build-01' });
    const rows = (
      await t.db.query<{ token_hash: string }>('select token_hash from workstations where id = $1', [
        out.workstation.id,
      ])
    ).rows;
    expect(rows).toEqual([{ token_hash: hashToken(out.credential.token) }]);
    expect((await store.get(id))?.redeemedBy).toBe(out.workstation.id);
  });

  it('maps 404 to PairingCodeRejectedError (used, unknown)', async () => {
    const { code } = await store.mint({ createdBy: 'admin' });
    await redeemPairingCode(base, code, { display_name: 'first' });
    for (const attempt of [code, 'ZZZZ-ZZZZ-ZZZZ']) {
      const e = await rejectionOf(redeemPairingCode(base, attempt, {}));
      expect(e).toBeInstanceOf(PairingCodeRejectedError);
      expect((e as PairingCodeRejectedError).status).toBe(404);
      expect((e as Error).message).toBe('pairing code is invalid, expired, or already used');
    }
  });

  it('rejects a malformed code without sending anything', async () => {
    const before = requests;
    for (const bad of ['', 'ABCD', 'K7QM-3XZA-RT90', 'OOOO-OOOO-OOOO']) {
      expect(
        isPairingError(await rejectionOf(redeemPairingCode(base, bad, {})), 'pairing-code-rejected'),
      ).toBe(true);
    }
    expect(requests).toBe(before);
  });

  it('maps 429 to PairingRateLimitedError with Retry-After (and a default without it)', async () => {
    await rejectionOf(redeemPairingCode(`${base}/strict`, 'ZZZZ-ZZZZ-ZZZ4', {}));
    const { code } = await store.mint({ createdBy: 'admin' });
    const e = await rejectionOf(redeemPairingCode(`${base}/strict`, 'YZZZ-ZZZZ-ZZZ4', {}));
    expect(e).toBeInstanceOf(PairingRateLimitedError);
    const limited = e as PairingRateLimitedError;
    expect(limited.status).toBe(429);
    expect(limited.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(limited.retryAfterSeconds).toBeLessThanOrEqual(60);
    // A valid code redeems even from the limited address.
    expect((await redeemPairingCode(`${base}/strict`, code, {})).credential.token).toMatch(/^rnt_ws_/);

    const noHeader = await rejectionOf(redeemPairingCode(`${base}/bare429`, code, {}));
    expect((noHeader as PairingRateLimitedError).retryAfterSeconds).toBe(60);
  });

  it("maps other failures to server-error with the server's message on one line", async () => {
    const e = await rejectionOf(redeemPairingCode(`${base}/broken`, 'ZZZZ-ZZZZ-ZZZZ', {}));
    expect(isPairingError(e, 'server-error')).toBe(true);
    expect((e as Error).message).toBe('database is down see logs');
    expect((e as { status?: number }).status).toBe(500);

    const proxy = await rejectionOf(redeemPairingCode(`${base}/proxy`, 'ZZZZ-ZZZZ-ZZZZ', {}));
    expect(isPairingError(proxy, 'server-error')).toBe(true);
    expect((proxy as Error).message).toBe(`${base}/proxy answered HTTP 502`);

    const weird = await rejectionOf(redeemPairingCode(`${base}/weird`, 'ZZZZ-ZZZZ-ZZZZ', {}));
    expect(isPairingError(weird, 'server-error')).toBe(true);
    expect((weird as Error).message).toMatch(/unexpected answer/);
  });

  it('reports an unreachable server as one line naming the URL', async () => {
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((ready) => probe.listen(0, '127.0.0.1', ready));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((done) => probe.close(() => done()));
    const url = `http://127.0.0.1:${port}`;
    const e = await rejectionOf(redeemPairingCode(url, 'ZZZZ-ZZZZ-ZZZZ', {}));
    expect(isPairingError(e, 'unreachable')).toBe(true);
    expect((e as Error).message).toMatch(
      new RegExp(`^cannot reach ${url.replaceAll('.', '\\.')}: .*ECONNREFUSED`),
    );
    expect((e as Error).message).not.toContain('\n');

    const bad = await rejectionOf(redeemPairingCode('ftp://example.com', 'ZZZZ-ZZZZ-ZZZZ', {}));
    expect(isPairingError(bad, 'unreachable')).toBe(true);
    const notUrl = await rejectionOf(redeemPairingCode('runt.example.com', 'ZZZZ-ZZZZ-ZZZZ', {}));
    expect((notUrl as Error).message).toBe('cannot reach runt.example.com: not a URL');
  });

  it('rejects with the abort reason when the signal is aborted', async () => {
    const ac = new AbortController();
    const reason = new Error('user pressed ctrl-c');
    ac.abort(reason);
    expect(await rejectionOf(redeemPairingCode(base, 'ZZZZ-ZZZZ-ZZZZ', {}, { signal: ac.signal }))).toBe(
      reason,
    );
  });
});
