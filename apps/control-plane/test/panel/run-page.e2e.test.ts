import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlaneClient } from '@runt/protocol';
import { startHarness, type Harness } from '../harness.js';
import { pairAgent, uniqueRuntime } from '../agent-double.js';
import { expectAccessible, launchBrowser, type TestBrowser } from './browser.js';

const until = <T>(probe: () => Promise<T> | T, timeout = 30_000) =>
  expect.poll(probe, { timeout, interval: 100 });

/** A TCP proxy in front of the control plane whose open connections the test can cut. */
async function cuttableProxy(
  target: string,
): Promise<{ url: string; cut(): number; close(): Promise<void> }> {
  const { hostname, port } = new URL(target);
  const open = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(Number(port), hostname);
    open.add(client);
    client.on('close', () => open.delete(client));
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    cut() {
      const n = open.size;
      for (const s of open) s.destroy();
      return n;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The run page in Chromium: why a run is still queued, its timeouts, its attempts, and a 1 MB live log across a reconnect. */
describe.each(TEST_BACKENDS)('the run page in Chromium on %s', (backend) => {
  let h: Harness;
  let b: TestBrowser;
  let admin: ControlPlaneClient;
  beforeAll(async () => {
    // Body limit of a real deployment (the harness's default is 64 KiB); ticks of a minute.
    h = await startHarness(
      backend,
      {},
      {
        schedulerTickMs: 60_000,
        sweepIntervalMs: 60_000,
        bodyLimitBytes: 1024 * 1024,
        secretKey: randomBytes(32).toString('base64'),
      },
    );
    admin = new ControlPlaneClient({ url: h.cp.url, token: h.adminToken, retries: 0 });
    b = await launchBrowser();
    await b.page.goto(`${h.cp.url}/sign-in`);
    await b.page.fill('#token', h.adminToken);
    await Promise.all([b.page.waitForURL(/\/workstations$/), b.page.press('#token', 'Enter')]);
  });
  afterAll(async () => {
    await b?.close();
    await h?.close();
  }, 60_000);

  it('shows why a run is still queued and its timeouts, and drops the reason live once it is placed', async () => {
    const { page } = b;
    const runtime = uniqueRuntime();
    const { run } = await admin.submitRun({ runtime, command: ['x'], timeout_s: 90, queue_timeout_s: 3600 });
    await page.goto(`${h.cp.url}/runs/${run.id}`);
    const reason = page.locator('[data-pending-reason]');
    expect(await reason.getAttribute('data-pending-reason')).toBe('no-runtime');
    expect(await reason.textContent()).toBe((await admin.getRun(run.id)).run.pending_reason!.message);
    expect(await page.locator('[data-timeout]').textContent()).toBe('1m 30s once started');
    expect(await page.locator('[data-queue-timeout]').textContent()).toBe('1h to be placed');

    // A workstation offering the runtime appears; the page's live part follows without a reload.
    await page.evaluate(() => ((window as unknown as { stayed: boolean }).stayed = true));
    const agent = await pairAgent(h, 'reason-box', [runtime]);
    await agent.registerHttp({ max_runs: 1 });
    await h.cp.scheduler.pass();
    await until(() => page.locator('[data-run-status]').getAttribute('data-run-status')).toBe('offered');
    expect(await reason.count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { stayed?: boolean }).stayed)).toBe(true);

    // A run without timeouts says so.
    const plain = (await admin.submitRun({ runtime: uniqueRuntime(), command: ['x'] })).run;
    await page.goto(`${h.cp.url}/runs/${plain.id}`);
    expect(await page.locator('[data-timeout]').textContent()).toBe('none');
    expect(await page.locator('[data-queue-timeout]').textContent()).toBe('none');
    await admin.cancelRun(plain.id); // nothing unplaceable stays queued for the next test
  }, 120_000);

  it('submits secret env entries from the form: stored sealed, shown hidden, never written back into a page', async () => {
    const { page } = b;
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'secret-box', [runtime]);
    await agent.connect({ max_runs: 1 });
    const secret = `s-${randomBytes(12).toString('hex')}`;
    await page.goto(`${h.cp.url}/runs/new`);

    // An error elsewhere in the form: the page comes back without the secret, and says so.
    await page.selectOption('#runtime', runtime);
    await page.fill('#cmd', 'deploy');
    await page.fill('#secret-env', `API_TOKEN=${secret}`);
    await page.fill('#labels', 'not-a-pair');
    await Promise.all([page.waitForLoadState('load'), page.click('#submit')]);
    expect(await page.locator('#submit-error').textContent()).toContain('Labels');
    expect(await page.locator('#secret-env').inputValue()).toBe('');
    expect(await page.locator('#secret-env-again').count()).toBe(1);
    expect(await page.content()).not.toContain(secret);
    // A name in both boxes is refused (which value would win is not guessed).
    await page.fill('#labels', '');
    await page.fill('#env', 'API_TOKEN=plain');
    await page.fill('#secret-env', `API_TOKEN=${secret}`);
    await Promise.all([page.waitForLoadState('load'), page.click('#submit')]);
    expect(await page.locator('#submit-error').textContent()).toBe(
      'API_TOKEN is in both Environment and Secret environment',
    );
    expect(await page.content()).not.toContain(secret);

    await page.fill('#env', 'PLAIN=p');
    await page.fill('#secret-env', `API_TOKEN=${secret}`);
    await Promise.all([page.waitForURL(/\/runs\/run_/), page.click('#submit')]);
    const runId = new URL(page.url()).pathname.split('/')[2]!;
    expect(await page.content()).not.toContain(secret);
    expect(await page.locator('li.mono', { hasText: 'API_TOKEN=' }).textContent()).toBe(
      'API_TOKEN=•••••• (hidden)',
    );
    const { run } = await admin.getRun(runId);
    expect(run.env).toEqual({ PLAIN: 'p', API_TOKEN: '***' });
    expect(run.secret_env_names).toEqual(['API_TOKEN']);
    // The agent that claims it gets the value: it was sealed, not lost.
    await h.cp.scheduler.pass();
    await until(async () => (await admin.getRun(runId)).run.status).toBe('offered');
    const claim = await agent.client.claimRun(runId, { runner_id: 'r', lease_ms: 60_000 });
    expect(claim.secret_env).toEqual({ API_TOKEN: secret });
    await agent.client.reportStatus(runId, {
      fencing_token: claim.fencing_token,
      status: 'completed',
      exit_code: 0,
    });
    await expectAccessible(page, 'a run submitted with a secret env entry');
  }, 120_000);

  it('shows each attempt of a run retried once on a nonzero exit, live, with its own log', async () => {
    const { page } = b;
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'retry-box', [runtime]);
    await agent.connect({ max_runs: 1 });
    const { run } = await admin.submitRun({
      runtime,
      command: ['x'],
      retry: { on: ['nonzero-exit'], max_attempts: 2, backoff: { initial_s: 0 } },
    });
    const attemptOnce = async (
      data: string,
      outcome: { status: 'failed' | 'completed'; exit_code: number },
    ) => {
      await h.cp.scheduler.pass();
      await until(async () => (await admin.getRun(run.id)).run.status).toBe('offered');
      const claim = await agent.client.claimRun(run.id, { runner_id: 'r', lease_ms: 60_000 });
      await agent.client.reportStatus(run.id, {
        fencing_token: claim.fencing_token,
        status: 'running',
        events: [{ seq: claim.next_event_seq, type: 'log', payload: { stream: 'stdout', data } }],
      });
      await agent.client.reportStatus(run.id, {
        fencing_token: claim.fencing_token,
        ...outcome,
        ...(outcome.exit_code ? { failure_kind: 'nonzero-exit' as const } : {}),
      });
    };
    await attemptOnce('first try\n', { status: 'failed', exit_code: 3 });

    // Attempt 1 failed and was retried: the page lists it beside the queued attempt 2.
    await page.goto(`${h.cp.url}/runs/${run.id}`);
    const row = (n: number) => page.locator(`[data-attempt="${n}"]`);
    expect(await page.locator('[data-attempt]').count()).toBe(2);
    expect(await row(1).locator('[data-attempt-status]').getAttribute('data-attempt-status')).toBe('failed');
    expect(await row(1).locator('[data-attempt-exit]').textContent()).toBe('3');
    expect(await row(1).textContent()).toContain('nonzero-exit');
    // (the retry is placed at once: backoff 0)
    expect(['queued', 'offered']).toContain(
      await row(2).locator('[data-attempt-status]').getAttribute('data-attempt-status'),
    );

    // Attempt 2 succeeds; the attempts follow without a reload.
    await page.evaluate(() => ((window as unknown as { stayed: boolean }).stayed = true));
    await attemptOnce('second try\n', { status: 'completed', exit_code: 0 });
    await until(() => row(2).locator('[data-attempt-status]').getAttribute('data-attempt-status')).toBe(
      'completed',
    );
    expect(await row(2).locator('[data-attempt-exit]').textContent()).toBe('0');
    expect(await page.evaluate(() => (window as unknown as { stayed?: boolean }).stayed)).toBe(true);

    // Each attempt's log link gives that attempt's output only; an attempt it never had is a 404.
    const fetchText = (href: string) =>
      page.evaluate(async (u) => {
        const res = await fetch(u);
        return { status: res.status, text: await res.text() };
      }, href);
    const href1 = (await page.locator('#attempt-log-1').getAttribute('href'))!;
    const href2 = (await page.locator('#attempt-log-2').getAttribute('href'))!;
    expect(await fetchText(href1)).toEqual({ status: 200, text: 'first try\n' });
    expect(await fetchText(href2)).toEqual({ status: 200, text: 'second try\n' });
    expect((await fetchText(`/runs/${run.id}/log`)).text).toBe('first try\nsecond try\n');
    expect((await fetchText(`/runs/${run.id}/log?attempt=3`)).status).toBe(404);
    await expectAccessible(page, 'a run retried once, with its attempts');
  }, 120_000);

  it('gets 1 MB of live output in order, without gaps or repeats, across a dropped connection', async () => {
    const { page } = b;
    const proxy = await cuttableProxy(h.cp.url);
    try {
      const runtime = uniqueRuntime();
      const agent = await pairAgent(h, 'log-box', [runtime]);
      await agent.connect({ max_runs: 1 });
      const { run } = await admin.submitRun({ runtime, command: ['x'] });
      await agent.waitFor('offer', (m) => m.id === run.id);
      const claim = await agent.client.claimRun(run.id, { runner_id: 'r', lease_ms: 60_000 });
      await agent.client.reportStatus(run.id, { fencing_token: claim.fencing_token, status: 'running' });

      // The page is opened through the proxy (the session cookie is per host, not per port).
      await page.goto(`${proxy.url}/runs/${run.id}`);
      const view = page.locator('[data-log]');
      const out = page.locator('[data-log-output]');
      await until(() => page.locator('[data-log-state]').textContent()).toBe('Following the log…');

      // 1 MiB: 16,384 numbered lines of 64 bytes, in events of 64 lines, 16 events per batch.
      const line = (i: number) => `line ${String(i).padStart(6, '0')} ${'x'.repeat(51)}\n`;
      const lines = 16_384;
      let seq = claim.next_event_seq;
      let sent = 0;
      const send = async (upTo: number) => {
        while (sent < upTo) {
          const events = [];
          for (let e = 0; e < 16 && sent < upTo; e++) {
            let data = '';
            for (let l = 0; l < 64; l++) data += line(sent++);
            events.push({ seq: seq++, type: 'log' as const, payload: { stream: 'stdout' as const, data } });
          }
          await agent.client.appendEvents(run.id, { fencing_token: claim.fencing_token, events });
        }
      };
      await send(lines / 2);
      // Half of it is on the page; then the connection drops and the rest is written meanwhile.
      const half = seq - 1;
      await until(async () => Number(await view.getAttribute('data-last-seq'))).toBe(half);
      expect(proxy.cut()).toBeGreaterThan(0);
      await send(lines);
      await agent.client.reportStatus(run.id, {
        fencing_token: claim.fencing_token,
        status: 'completed',
        exit_code: 0,
      });
      await until(() => page.locator('[data-log-state]').textContent(), 60_000).toBe(
        'The run has ended; this is its whole log.',
      );
      const text = (await out.textContent())!;
      let expected = '';
      for (let i = 0; i < lines; i++) expected += line(i);
      expected += '[run completed, exit 0]\n';
      expect(text.length).toBe(expected.length);
      expect(text === expected).toBe(true);
    } finally {
      await proxy.close();
    }
  }, 180_000);
});
