import { Writable } from 'node:stream';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { LINK_CLOSE_CODES } from '@runt/protocol';
import { loadConfig } from '../src/config.js';
import { startControlPlane, type RunningControlPlane, type StartOptions } from '../src/server.js';
import { startHarness, type Harness } from './harness.js';

/** Polls `check` every 10 ms until it is truthy, failing after `timeoutMs`. */
async function within<T>(timeoutMs: number, check: () => T | Promise<T>): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > until) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('credential cache across control-plane replicas on postgres', () => {
  let a: Harness;
  let b: RunningControlPlane;
  beforeAll(async () => {
    a = await startHarness('postgres', {
      pairingLimits: { perAddress: { max: 100, windowMs: 60_000 }, overall: { max: 1000, windowMs: 60_000 } },
    });
    const silent = new Writable({ write: (_c, _e, cb) => cb() });
    // Replica B opens its own pool (and its own LISTEN connection) on the same database.
    b = await startControlPlane(
      loadConfig(
        {},
        {
          port: 0,
          host: '127.0.0.1',
          dataDir: mkdtempSync(join(tmpdir(), 'runt-cp-b-')),
          adminToken: a.adminToken,
          databaseUrl: a.t.url!,
          logLevel: 'info',
        },
      ),
      { logDestination: silent as unknown as NonNullable<StartOptions['logDestination']> },
    );
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  async function pair(name: string): Promise<{ token: string; credentialId: string }> {
    const minted = await a.api('/api/workstations/pairing-codes', { token: a.adminToken, body: {} });
    const redeemed = await a.api('/api/workstations/pairing-codes/redeem', {
      body: { code: minted.json.pairing.code, display_name: name },
    });
    expect(redeemed.status).toBe(201);
    return { token: redeemed.json.credential.token, credentialId: redeemed.json.credential.credential_id };
  }

  const heartbeat = async (token: string) =>
    (
      await fetch(`${b.url}/api/workstations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          display_name: 'cached',
          cpu_count: 1,
          runtimes: [],
          agent_version: '1',
          listening: false,
        }),
      })
    ).status;

  // A repeat request is answered from B's cache. The pairing's own notification may reach B while
  // the first lookup is in flight (that lookup is then not cached, by design): ask until one hits.
  const servedFromCache = (token: string) =>
    within(5000, async () => {
      const hits = b.principals.stats().hits;
      expect(await heartbeat(token)).toBe(200);
      return b.principals.stats().hits > hits;
    });

  it('serves repeat requests from the cache, and a revoke on replica A is a 401 on replica B at once', async () => {
    await within(5000, () => b.principals.stats().enabled);
    const { token, credentialId } = await pair('cached-box');
    expect(await heartbeat(token)).toBe(200);
    await servedFromCache(token); // the first lookup may have raced the pairing's notification
    const before = b.principals.stats();
    expect(await heartbeat(token)).toBe(200);
    expect(await heartbeat(token)).toBe(200);
    const after = b.principals.stats();
    expect(after.hits - before.hits).toBe(2); // B did not read the credential again
    expect(after.misses).toBe(before.misses);

    const link = new WebSocket(`${b.url.replace(/^http/, 'ws')}/api/agent/link`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const closed = new Promise<number>((r) => link.once('close', (code) => r(code)));
    await new Promise((r, j) => link.once('open', r).once('error', j));

    const rev = await a.api(`/api/workstations/credentials/${credentialId}/revoke`, {
      token: a.adminToken,
      method: 'POST',
    });
    expect(rev.status).toBe(200);
    const t0 = Date.now();
    await within(2000, async () => (await heartbeat(token)) === 401);
    expect(Date.now() - t0).toBeLessThan(2000);
    // B's link of that credential is closed by the notification too, not only by its next ping round.
    expect(await Promise.race([closed, new Promise((r) => setTimeout(() => r('still open'), 2000))])).toBe(
      LINK_CLOSE_CODES.revoked,
    );
  });

  it('listens on one connection per replica for all its channels (Postgres wakes every listener on each NOTIFY)', async () => {
    const listeners = async () =>
      (
        await a.t.db.query<{ query: string }>(
          `select query from pg_stat_activity where query ilike 'listen%' and datname = current_database()`,
        )
      ).rows;
    await within(5000, async () => (await listeners()).length === 2);
    for (const { query } of await listeners())
      for (const channel of ['runt_credentials', 'runt_link', 'runt_schedule'])
        expect(query).toContain(channel);
  });

  it('stops serving from the cache while its LISTEN connection is down, and resumes once it is back', async () => {
    await within(5000, () => b.principals.stats().enabled);
    const { token, credentialId } = await pair('listen-box');
    expect(await heartbeat(token)).toBe(200);
    await servedFromCache(token);

    const lost = b.principals.stats().listenLost;
    const killed = await a.t.db.query<{ ok: boolean }>(
      `select pg_terminate_backend(pid) as ok from pg_stat_activity where query ilike 'listen%' and datname = current_database()`,
    );
    expect(killed.rows.length).toBeGreaterThanOrEqual(1); // A's and B's listeners
    await within(2000, () => b.principals.stats().listenLost > lost);
    expect(b.principals.stats()).toMatchObject({ enabled: false, size: 0 });

    // A revoke nobody is told about (no notify) is seen at once: nothing is cached now.
    await a.t.db.query('update credentials set revoked_at = now() where id = $1', [credentialId]);
    expect(await heartbeat(token)).toBe(401);

    // Back on its own, starting empty.
    await within(5000, () => b.principals.stats().enabled);
    const other = await pair('listen-box-2');
    expect(await heartbeat(other.token)).toBe(200);
    await servedFromCache(other.token);
    expect(await heartbeat(token)).toBe(401);
  });
});
