import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { startHarness, type Harness } from './harness.js';

const errorShape = { error: { code: expect.any(String), message: expect.any(String) } };

describe.each(TEST_BACKENDS)('control plane API on %s', (backend) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(backend, {
      pairingLimits: { perAddress: { max: 5, windowMs: 60_000 }, overall: { max: 1000, windowMs: 60_000 } },
    });
  });
  afterAll(async () => h?.close());

  async function pair(name = 'box-1') {
    const minted = await h.api('/api/workstations/pairing-codes', { token: h.adminToken, body: {} });
    expect(minted.status).toBe(201);
    const redeemed = await h.api('/api/workstations/pairing-codes/redeem', {
      body: { code: minted.json.pairing.code, display_name: name, hostname: `${name}.lan` },
    });
    expect(redeemed.status).toBe(201);
    return { minted: minted.json, redeemed: redeemed.json };
  }

  it('answers health and readiness', async () => {
    expect((await h.api('/healthz')).json).toEqual({ ok: true });
    expect((await h.api('/readyz')).json).toEqual({ ok: true, database: backend });
  });

  it('mints a code in the contract format with a ready connect command', async () => {
    const r = await h.api('/api/workstations/pairing-codes', {
      token: h.adminToken,
      body: { ttl_seconds: 600 },
    });
    expect(r.status).toBe(201);
    expect(r.json.pairing.code).toMatch(
      /^[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4}$/,
    );
    expect(r.json.connect_command).toBe(
      `npx @runt/cli workstation connect ${h.cp.url} --code ${r.json.pairing.code}`,
    );
    const expires = Date.parse(r.json.pairing.expires_at) - Date.now();
    expect(expires).toBeGreaterThan(500_000);
    expect(expires).toBeLessThanOrEqual(600_000);
  });

  it('walks a code through pending → redeemed → registered', async () => {
    const minted = await h.api('/api/workstations/pairing-codes', { token: h.adminToken, body: {} });
    const id = minted.json.pairing.id;
    const status = async () =>
      (await h.api(`/api/workstations/pairing-codes/${id}/status`, { token: h.adminToken })).json.pairing;
    expect((await status()).status).toBe('pending');
    const redeemed = await h.api('/api/workstations/pairing-codes/redeem', {
      body: { code: minted.json.pairing.code.toLowerCase().replaceAll('-', ' ') },
    });
    expect(redeemed.status).toBe(201);
    expect(redeemed.json.credential.token).toMatch(/^rnt_ws_[A-Za-z0-9_-]{43}$/);
    expect(await status()).toMatchObject({
      status: 'redeemed',
      workstation_id: redeemed.json.workstation.id,
    });
    const reg = await h.api('/api/workstations', {
      token: redeemed.json.credential.token,
      body: {
        display_name: 'w',
        cpu_count: 2,
        runtimes: ['process'],
        agent_version: '0.1.0',
        listening: false,
      },
    });
    expect(reg.status).toBe(200);
    expect(reg.json.workstation).toMatchObject({
      id: redeemed.json.workstation.id,
      status: 'online',
      listening: false,
      runtimes: ['process'],
    });
    expect((await status()).status).toBe('registered');
  });

  it("accepts the seed system's agent: redeem answers ok and pairing.id, its heartbeat body registers in either key style", async () => {
    const minted = await h.api('/api/workstations/pairing-codes', { token: h.adminToken, body: {} });
    const redeemed = await h.api('/api/workstations/pairing-codes/redeem', {
      body: { code: minted.json.pairing.code },
    });
    expect(redeemed.status).toBe(201);
    expect(redeemed.json).toMatchObject({
      ok: true,
      pairing: { id: minted.json.pairing.id },
      credential: { token: expect.any(String) },
    });
    const token = redeemed.json.credential.token;
    const seed = {
      workstation_id: redeemed.json.workstation.id,
      display_name: 'seed-box',
      provider: 'local',
      default_environment_label: 'default',
      environment_policy: { mode: 'any' },
      working_directory: '/srv/work',
      capabilities: ['shell'],
      runtime: 'process',
      cpu_count: 4,
      memory_bytes: 8_000_000_000,
    };
    const snake = await h.api('/api/workstations', { token, body: seed });
    expect(snake.status, JSON.stringify(snake.json)).toBe(200);
    expect(snake.json.workstation).toMatchObject({
      display_name: 'seed-box',
      cpu_count: 4,
      runtimes: ['process'],
      listening: false,
      agent_version: 'unknown',
    });
    const camel = await h.api('/api/workstations', {
      token,
      body: {
        workstationId: seed.workstation_id,
        displayName: 'seed-camel',
        defaultEnvironmentLabel: 'x',
        workingDirectory: '/w',
        runtime: 'docker',
        cpuCount: 2,
        memoryBytes: 1024,
      },
    });
    expect(camel.status, JSON.stringify(camel.json)).toBe(200);
    expect(camel.json.workstation).toMatchObject({
      display_name: 'seed-camel',
      cpu_count: 2,
      memory_bytes: 1024,
      runtimes: ['docker'],
    });
  });

  it('reports an expired code as expired and refuses it with the same 404', async () => {
    const minted = await h.api('/api/workstations/pairing-codes', { token: h.adminToken, body: {} });
    await h.t.db.query(`update pairing_codes set expires_at = now() - interval '1 minute' where id = $1`, [
      minted.json.pairing.id,
    ]);
    expect(
      (
        await h.api(`/api/workstations/pairing-codes/${minted.json.pairing.id}/status`, {
          token: h.adminToken,
        })
      ).json.pairing.status,
    ).toBe('expired');
    const r = await h.api('/api/workstations/pairing-codes/redeem', {
      body: { code: minted.json.pairing.code },
    });
    expect(r.status).toBe(404);
    expect(r.json).toEqual({
      error: { code: 'pairing-code-rejected', message: 'pairing code is invalid, expired, or already used' },
    });
  });

  it('keeps auth straight: 401 without or with an unknown token, 403 for the wrong kind', async () => {
    const { redeemed } = await pair('auth-box');
    expect((await h.api('/api/workstations/credentials')).status).toBe(401);
    expect(
      (await h.api('/api/workstations/credentials', { token: 'rnt_adm_' + 'A'.repeat(43) })).status,
    ).toBe(401);
    const wrongKind = await h.api('/api/workstations/credentials', { token: redeemed.credential.token });
    expect(wrongKind.status).toBe(403);
    expect(wrongKind.json).toMatchObject(errorShape);
    const adminHeartbeat = await h.api('/api/workstations', {
      token: h.adminToken,
      body: { display_name: 'x', cpu_count: 1, runtimes: [], agent_version: '1', listening: false },
    });
    expect(adminHeartbeat.status).toBe(403);
  });

  it('lists credentials without secrets and revokes at once', async () => {
    const { redeemed } = await pair('revoke-box');
    const list = await h.api('/api/workstations/credentials', { token: h.adminToken });
    expect(list.status).toBe(200);
    expect(JSON.stringify(list.json)).not.toContain(redeemed.credential.token);
    expect(
      list.json.credentials.find((c: { id: string }) => c.id === redeemed.credential.credential_id),
    ).toMatchObject({ kind: 'workstation', display_name: 'revoke-box', revoked_at: null });
    const rev = await h.api(`/api/workstations/credentials/${redeemed.credential.credential_id}/revoke`, {
      token: h.adminToken,
      method: 'POST',
    });
    expect(rev.status).toBe(200);
    expect(rev.json.credential.revoked_at).toEqual(expect.any(String));
    expect((await h.api('/api/workstations', { token: redeemed.credential.token })).status).toBe(401);
    const fleet = await h.api('/api/workstations', { token: h.adminToken });
    expect(fleet.json.workstations.find((w: { id: string }) => w.id === redeemed.workstation.id).status).toBe(
      'revoked',
    );
    expect(
      (await h.api('/api/workstations/credentials/nope/revoke', { token: h.adminToken, method: 'POST' }))
        .status,
    ).toBe(404);
  });

  it('marks a workstation offline 90 s after its last heartbeat', async () => {
    const { redeemed } = await pair('quiet-box');
    await h.api('/api/workstations', {
      token: redeemed.credential.token,
      body: { display_name: 'quiet-box', cpu_count: 1, runtimes: [], agent_version: '1', listening: true },
    });
    const find = async () =>
      (await h.api('/api/workstations', { token: h.adminToken })).json.workstations.find(
        (w: { id: string }) => w.id === redeemed.workstation.id,
      );
    expect((await find()).status).toBe('online');
    await h.t.db.query(`update workstations set last_seen_at = now() - interval '91 seconds' where id = $1`, [
      redeemed.workstation.id,
    ]);
    expect((await find()).status).toBe('offline');
  });

  describe('bad input gets a 4xx with the error shape, never a 5xx', () => {
    const cases: Array<[string, () => Promise<{ status: number; json: unknown }>, number]> = [
      ['malformed JSON', () => h.api('/api/workstations/pairing-codes/redeem', { raw: '{"code":' }), 400],
      ['a JSON array', () => h.api('/api/workstations/pairing-codes/redeem', { raw: '[1,2]' }), 400],
      ['wrong types', () => h.api('/api/workstations/pairing-codes/redeem', { body: { code: 42 } }), 400],
      [
        'a huge ttl',
        () =>
          h.api('/api/workstations/pairing-codes', { token: h.adminToken, body: { ttl_seconds: 10 ** 9 } }),
        400,
      ],
      [
        'not JSON at all',
        () =>
          h.api('/api/workstations/pairing-codes/redeem', {
            raw: 'code=1',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
          }),
        415,
      ],
      [
        'an oversized body',
        () => h.api('/api/workstations/pairing-codes/redeem', { body: { code: 'x'.repeat(200_000) } }),
        413,
      ],
      ['an unknown route', () => h.api('/api/nothing-here'), 404],
      [
        'an unknown pairing id',
        () => h.api('/api/workstations/pairing-codes/nope/status', { token: h.adminToken }),
        404,
      ],
      [
        'a wrong method',
        () => h.api('/api/workstations/credentials', { token: h.adminToken, method: 'DELETE' }),
        404,
      ],
    ];
    it.each(cases)('%s', async (_name, call, status) => {
      const r = await call();
      expect(r.status).toBe(status);
      expect(r.json).toMatchObject(errorShape);
    });

    it('wrong types in a heartbeat name the field', async () => {
      const { redeemed } = await pair('typo-box');
      const r = await h.api('/api/workstations', {
        token: redeemed.credential.token,
        body: { display_name: 'x', cpu_count: 'two', runtimes: [], agent_version: '1', listening: false },
      });
      expect(r.status).toBe(400);
      expect((r.json as { error: { message: string } }).error.message).toMatch(/^cpu_count: /);
    });
  });

  it('never writes a workstation token to the database or the logs in plain text', async () => {
    const { redeemed } = await pair('secret-box');
    const token: string = redeemed.credential.token;
    const secret = token.slice('rnt_ws_'.length);
    const tables = await h.t.db.query<{ table_name: string }>(
      `select table_name from information_schema.tables where table_schema = 'public'`,
    );
    for (const { table_name } of tables.rows) {
      const rows = await h.t.db.query(`select * from ${table_name}`);
      expect(JSON.stringify(rows.rows)).not.toContain(secret);
    }
    // A token sent where it does not belong must not reach the logs either.
    await h.api('/api/workstations/pairing-codes/redeem', { body: { code: token } });
    expect(h.logs.length).toBeGreaterThan(0);
    expect(h.logs.join('\n')).not.toContain(secret);
  });
  it('limits failed redeems per client address with 429 and Retry-After', async () => {
    let last = { status: 0, headers: new Headers(), json: undefined as unknown };
    for (let i = 0; i < 8 && last.status !== 429; i++) {
      last = await h.api('/api/workstations/pairing-codes/redeem', { body: { code: 'ZZZZ-ZZZZ-ZZZZ' } });
    }
    expect(last.status).toBe(429);
    expect(Number(last.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(last.json).toMatchObject({ error: { code: 'rate-limited' } });
  });
});
