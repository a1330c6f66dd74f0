import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../harness.js';
import { launchBrowser, type TestBrowser } from './browser.js';

const until = <T>(probe: () => Promise<T> | T, timeout = 20_000) =>
  expect.poll(probe, { timeout, interval: 100 });

/** Signs in over HTTP as a browser form would; returns the session cookie pair. */
async function signIn(
  url: string,
  token: string,
  origin = url,
): Promise<{ status: number; cookie: string; setCookie: string }> {
  const res = await fetch(`${url}/sign-in`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin },
    body: new URLSearchParams({ token, next: '/workstations' }),
    redirect: 'manual',
  });
  const setCookie = res.headers.get('set-cookie') ?? '';
  return { status: res.status, cookie: setCookie.split(';')[0] ?? '', setCookie };
}

describe.each(TEST_BACKENDS)('panel security on %s', (backend) => {
  let h: Harness;
  let b: TestBrowser;
  let attacker: Server;
  let attackerUrl: string;
  let workstationId: string;

  beforeAll(async () => {
    h = await startHarness(backend, {
      pairingLimits: { perAddress: { max: 4, windowMs: 60_000 }, overall: { max: 1000, windowMs: 60_000 } },
    });
    // A paired (never started) workstation to aim forged requests at.
    const minted = await h.api('/api/workstations/pairing-codes', { token: h.adminToken, body: {} });
    const redeemed = await h.api('/api/workstations/pairing-codes/redeem', {
      body: { code: minted.json.pairing.code, display_name: 'target' },
    });
    workstationId = redeemed.json.workstation.id;
    b = await launchBrowser();
    // Another origin (another port: same site, so a SameSite=Strict cookie IS sent; only the Origin check stops it).
    attacker = createServer((req, res) => {
      if (req.url === '/go.js') {
        res.writeHead(200, { 'content-type': 'text/javascript' }).end('document.forms[0].submit();');
        return;
      }
      res
        .writeHead(200, { 'content-type': 'text/html' })
        .end(
          `<!doctype html><title>evil</title><form method="post" action="${h.cp.url}/workstations/${workstationId}/drain"></form><script src="/go.js"></script>`,
        );
    });
    await new Promise<void>((r) => attacker.listen(0, '127.0.0.1', r));
    attackerUrl = `http://127.0.0.1:${(attacker.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await b?.close();
    await new Promise((r) => attacker?.close(r));
    await h?.close();
  });

  it('refuses a forged cross-origin POST from a signed-in browser, and one with no Origin', async () => {
    const { page } = b;
    await page.goto(`${h.cp.url}/sign-in`);
    await page.fill('#token', h.adminToken);
    await page.press('#token', 'Enter');
    await until(() => new URL(page.url()).pathname).toBe('/workstations');

    const answered = page.waitForResponse((r) => r.url().includes(`/workstations/${workstationId}/drain`));
    await page.goto(attackerUrl);
    const res = await answered;
    expect(res.status()).toBe(403);
    expect(await res.text()).toContain('Origin check');
    expect((await res.request().allHeaders()).cookie ?? '').toContain('runt_session='); // the cookie went along; Origin stopped it

    const { cookie } = await signIn(h.cp.url, h.adminToken);
    const noOrigin = await fetch(`${h.cp.url}/workstations/${workstationId}/drain`, {
      method: 'POST',
      headers: { cookie },
      redirect: 'manual',
    });
    expect(noOrigin.status).toBe(403);
    const ws = await h.api('/api/workstations', { token: h.adminToken });
    expect(ws.json.workstations.find((w: { id: string }) => w.id === workstationId).status).not.toBe(
      'draining',
    );
    // The same request from the panel's own origin works.
    const own = await fetch(`${h.cp.url}/workstations/${workstationId}/drain`, {
      method: 'POST',
      headers: { cookie, origin: h.cp.url },
      redirect: 'manual',
    });
    expect(own.status).toBe(303);
  });

  it('sends back to sign-in once the session expired, and serves the security headers', async () => {
    const { page } = b;
    await page.goto(`${h.cp.url}/workstations`);
    expect(new URL(page.url()).pathname).toBe('/workstations');
    await h.t.db.query("update panel_sessions set expires_at = now() - interval '1 second'");
    const res = await page.goto(`${h.cp.url}/workstations/new`);
    expect(new URL(page.url()).pathname).toBe('/sign-in');
    expect(new URL(page.url()).searchParams.get('next')).toBe('/workstations/new');
    const headers = res!.headers();
    expect(headers['content-security-policy']).toContain("script-src 'self'");
    expect(headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(headers['content-security-policy']).not.toContain('unsafe-inline');
    expect(headers['x-frame-options']).toBe('DENY');
    // Signing in again brings the operator back where they were going.
    await page.fill('#token', h.adminToken);
    await page.press('#token', 'Enter');
    await until(() => new URL(page.url()).pathname).toBe('/workstations/new');
  });

  it('counts wrong tokens against the same 429 limits as pairing-code guesses', async () => {
    // Earlier sign-ins in this file were right: they cost nothing. Two wrong tokens, then a wrong code…
    expect((await signIn(h.cp.url, 'rnt_adm_wrong')).status).toBe(401);
    expect((await signIn(h.cp.url, 'not even a token')).status).toBe(401);
    const guess = await h.api('/api/workstations/pairing-codes/redeem', { body: { code: 'ZZZZ-ZZZZ-ZZZ2' } });
    expect(guess.status).toBe(404);
    expect((await signIn(h.cp.url, 'rnt_adm_wrong-again')).status).toBe(401);
    // …and the budget (4) is spent: the right token is refused for now, and so is redeeming.
    const limited = await fetch(`${h.cp.url}/sign-in`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: h.cp.url },
      body: new URLSearchParams({ token: h.adminToken }),
      redirect: 'manual',
    });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(limited.headers.get('set-cookie')).toBeNull();
    expect(await limited.text()).toContain('Too many wrong tokens');
    const redeem = await h.api('/api/workstations/pairing-codes/redeem', {
      body: { code: 'ZZZZ-ZZZZ-ZZZ3' },
    });
    expect(redeem.status).toBe(429);
  });
});

describe('the session cookie behind https', () => {
  it('is Secure, HttpOnly, SameSite=Strict when RUNT_PUBLIC_URL is https', async () => {
    const h = await startHarness('pglite', {}, { publicUrl: 'https://runt.example.test' });
    try {
      const r = await signIn(h.cp.url, h.adminToken, 'https://runt.example.test');
      expect(r.status).toBe(303);
      expect(r.setCookie).toMatch(/^runt_session=[A-Za-z0-9_-]{43};/);
      expect(r.setCookie).toContain('HttpOnly');
      expect(r.setCookie).toContain('Secure');
      expect(r.setCookie).toContain('SameSite=Strict');
      expect(r.setCookie).toContain('Path=/');
      // Stored hashed: the cookie value is not in the table.
      const rows = await h.t.db.query<{ token_hash: string }>('select token_hash from panel_sessions');
      expect(rows.rows).toHaveLength(1);
      expect(rows.rows[0]!.token_hash).not.toContain(r.cookie.split('=')[1]!);
      expect(rows.rows[0]!.token_hash).toMatch(/^[0-9a-f]{64}$/);
    } finally {
      await h.close();
    }
  });
});
