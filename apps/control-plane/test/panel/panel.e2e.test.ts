/// <reference lib="dom" />
// page.evaluate bodies run in the browser.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectCommand } from '@runt/protocol';
import { startHarness, type Harness } from '../harness.js';
import { expectAccessible, launchBrowser, screenshotDir, tabTo, type TestBrowser } from './browser.js';
import { runConnectLine, startAgent } from './cli-agent.js';

/**
 * The panel end to end in a real Chromium against a listening control plane, with a real agent
 * started through the CLI: sign in (keyboard only), add a workstation, run the shown line, see
 * it online without a reload, drain and revoke it, sign out.
 */
/** Polls until the matcher holds (a page under a loaded CI machine may take a while). */
const until = <T>(probe: () => Promise<T> | T, timeout = 20_000) =>
  expect.poll(probe, { timeout, interval: 100 });

describe.each(TEST_BACKENDS)('the panel in Chromium on %s', (backend) => {
  let h: Harness;
  let b: TestBrowser;
  let agent: ReturnType<typeof startAgent> | undefined;
  const shots = screenshotDir();
  const seenHtml: string[] = [];
  const root = mkdtempSync(join(tmpdir(), 'runt-panel-'));

  beforeAll(async () => {
    h = await startHarness(backend, {}, { sweepIntervalMs: 200, schedulerTickMs: 200, linkPingMs: 1_000 });
    b = await launchBrowser();
    // Every HTML document the browser receives is kept, to look for the token in it.
    b.page.on('response', async (res) => {
      if ((res.headers()['content-type'] ?? '').includes('text/html'))
        seenHtml.push(await res.text().catch(() => ''));
    });
  });
  afterAll(async () => {
    await agent?.stop();
    await b?.close();
    await h?.close();
  }, 120_000);

  it('signs in with the keyboard, pairs a workstation through the shown line, drains and revokes it, signs out', async () => {
    const { page } = b;
    const url = h.cp.url;

    // Signed out, every page leads to sign-in.
    await page.goto(`${url}/workstations`);
    await until(() => new URL(page.url()).pathname).toBe('/sign-in');
    await expectAccessible(page, 'sign-in');
    if (backend === 'pglite') await page.screenshot({ path: join(shots, 'sign-in.png') });

    // Keyboard only: the token field has focus; a wrong token gets a clear message.
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('token');
    await page.keyboard.type('rnt_adm_not-the-token');
    await page.keyboard.press('Enter');
    await until(() => page.locator('#sign-in-error').textContent()).toContain('not a valid admin token');
    await expectAccessible(page, 'sign-in with an error');
    await page.focus('#token');
    await page.keyboard.type(h.adminToken);
    await page.keyboard.press('Enter');
    await until(() => new URL(page.url()).pathname).toBe('/workstations');

    const cookie = (await b.context.cookies(url)).find((c) => c.name === 'runt_session');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', secure: false, path: '/' });
    expect(cookie!.value).not.toContain(h.adminToken);
    await expectAccessible(page, 'workstations (empty)');

    // Add a workstation, keyboard only: Tab to the navigation entry and to the button.
    await tabTo(page, 'a[href="/workstations/new"]');
    await page.keyboard.press('Enter');
    await until(() => new URL(page.url()).pathname).toBe('/workstations/new');
    await expectAccessible(page, 'add a workstation');
    await tabTo(page, '#mint');
    await page.keyboard.press('Enter');
    const line = (await page.locator('#connect-line').textContent())!.trim();
    const code = /--code (\S+)$/.exec(line)![1]!;
    expect(line).toBe(connectCommand(h.cp.publicUrl, code));
    await until(() => page.locator('[data-countdown]').textContent()).toMatch(
      /^Code expires in (10:00|9:[0-5]\d)$/,
    );
    expect(await page.locator('[data-pairing-status]').textContent()).toBe('waiting for the workstation');
    await tabTo(page, '#copy');
    await expectAccessible(page, 'pairing code');
    if (backend === 'pglite') await page.screenshot({ path: join(shots, 'add-workstation.png') });

    // The same document stays loaded from here until the workstation is online (no reload).
    await page.evaluate(() => ((window as unknown as { stayed: boolean }).stayed = true));
    const configDir = join(root, 'ws-panel', 'config');
    const { workstationId } = await runConnectLine(line, configDir, 'ws-panel');
    agent = startAgent(configDir, ['--runtime', 'process', '--max-runs', '2', '--labels', 'pool=panel']);
    await until(() => page.locator('[data-pairing-status]').textContent(), 60_000).toBe(
      'registered · online',
    );
    const done = page.locator('[data-pairing-done] a');
    expect(await done.textContent()).toBe('ws-panel is online');
    expect(await done.getAttribute('href')).toBe(`/workstations#ws-${workstationId}`);
    expect(await page.evaluate(() => (window as unknown as { stayed?: boolean }).stayed)).toBe(true);
    if (backend === 'pglite') await page.screenshot({ path: join(shots, 'add-workstation-online.png') });

    // The fleet page shows it online with its runtimes, labels and capacity.
    await done.click();
    let row = page.locator(`#ws-${workstationId}`);
    await until(() => row.locator('[data-col="status"]').textContent()).toBe('online');
    // The agent registers its runtimes, labels and capacity over its link right after pairing.
    await until(() => row.textContent()).toContain('pool=panel');
    const text = (await row.textContent())!;
    expect(text).toContain('ws-panel');
    expect(text).toContain('process');
    expect(text).toContain('pool=panel');
    expect(text).toContain('0 / 2');
    await expectAccessible(page, 'workstations');
    if (backend === 'pglite') await page.screenshot({ path: join(shots, 'workstations.png') });

    // Submit a run from the form; its output appears live on the run page.
    await page.click('a[href="/runs/new"]');
    await until(() => new URL(page.url()).pathname).toBe('/runs/new');
    await expectAccessible(page, 'submit a run');
    await page.selectOption('#runtime', 'process');
    await page.fill('#cmd', 'for i in 1 2 3; do echo line-$i; sleep 0.3; done; echo done-marker');
    await page.fill('#env', 'GREETING=hello\nAPI_TOKEN=s3cret-value');
    await page.fill('#labels', 'pool=panel');
    await Promise.all([page.waitForURL(/\/runs\/run_/), page.click('#submit')]);
    const firstRun = new URL(page.url()).pathname.split('/')[2]!;
    const log = page.locator('[data-log-output]');
    // The last line may arrive before the run's end (the process adapter reads output as it is
    // written): wait for the end, then the whole log, in order, once.
    await until(() => log.textContent(), 60_000).toContain('[run completed');
    expect(await log.textContent()).toBe('line-1\nline-2\nline-3\ndone-marker\n[run completed, exit 0]\n');
    await until(() => page.locator('[data-run-status]').getAttribute('data-run-status')).toBe('completed');
    await until(() => page.locator('[data-log-state]').textContent()).toContain('has ended');
    const spec = (await page.locator('dl.spec').last().textContent())!;
    expect(spec).toContain('GREETING=hello');
    expect(spec).toContain('API_TOKEN=•••••• (hidden)');
    expect(await page.content()).not.toContain('s3cret-value');
    await expectAccessible(page, 'a finished run');
    if (backend === 'pglite') await page.screenshot({ path: join(shots, 'run.png'), fullPage: true });
    const download = await page.request.get(`${url}/runs/${firstRun}/log`);
    expect(download.headers()['content-disposition']).toContain(`${firstRun}.log`);
    expect(await download.text()).toBe('line-1\nline-2\nline-3\ndone-marker\n');

    // The stream resumes after a reconnect where it left off: Last-Event-ID n gives n+1 first.
    const cookieValue = (await b.context.cookies(url)).find((c) => c.name === 'runt_session')!.value;
    const resumed = await fetch(`${url}/runs/${firstRun}/events`, {
      headers: { cookie: `runt_session=${cookieValue}`, 'last-event-id': '2', accept: 'text/event-stream' },
    });
    const ids = [...(await resumed.text()).matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    expect(ids[0]).toBe(3);
    expect(ids).toEqual([...new Set(ids)].sort((a, c) => a - c));

    // A long run: queue a command and see its result, then cancel it with the keyboard.
    await page.goto(`${url}/runs/new`);
    await page.fill('#cmd', 'echo long-started; exec sleep 300');
    await Promise.all([page.waitForURL(/\/runs\/run_/), page.click('#submit')]);
    const longRun = new URL(page.url()).pathname.split('/')[2]!;
    await until(() => log.textContent(), 60_000).toContain('long-started');
    await until(() => page.locator('[data-run-status]').getAttribute('data-run-status')).toBe('running');
    await page.fill('#command', 'echo from-a-command');
    await Promise.all([page.waitForURL(/#commands$/), page.press('#command', 'Enter')]);
    await until(() => page.locator('[data-command] td').nth(1).textContent(), 60_000).toBe('completed');
    await until(() => log.textContent()).toContain('from-a-command');
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.focus('main');
    await tabTo(page, '#cancel');
    await Promise.all([page.waitForURL(new RegExp(`/runs/${longRun}$`)), page.keyboard.press('Enter')]);
    await until(() => page.locator('[data-run-status]').getAttribute('data-run-status'), 60_000).toBe(
      'cancelled',
    );
    await until(() => log.textContent()).toContain('[run cancelled');
    await expectAccessible(page, 'a cancelled run');

    // The runs list: counts per status, filters, live.
    await page.click('a[href="/runs"]');
    await until(() => new URL(page.url()).pathname).toBe('/runs');
    expect(await page.locator('[data-count="completed"]').textContent()).toBe('1');
    expect(await page.locator('[data-count="cancelled"]').textContent()).toBe('1');
    await page.selectOption('#f-status', 'cancelled');
    await Promise.all([page.waitForURL(/status=cancelled/), page.click('.filters button')]);
    expect(await page.locator('tbody tr').count()).toBe(1);
    expect(await page.locator(`#run-${longRun}`).count()).toBe(1);
    await expectAccessible(page, 'runs');
    await page.goto(`${url}/runs?workstation=ws-panel`);
    expect(await page.locator('tbody tr').count()).toBe(2);
    if (backend === 'pglite') await page.screenshot({ path: join(shots, 'runs.png') });
    await page.goto(`${url}/workstations`);

    row = page.locator(`#ws-${workstationId}`);
    // Drain: the workstation takes no new work; the page shows it without a reload.
    await Promise.all([page.waitForURL(/done=drained/), page.click(`#drain-${workstationId}`)]);
    await page.evaluate(() => ((window as unknown as { stayed: boolean }).stayed = true));
    await until(() => row.locator('[data-col="status"]').textContent(), 30_000).toMatch(
      /^(draining|offline)$/,
    );
    if (backend === 'pglite') await page.screenshot({ path: join(shots, 'workstations-drained.png') });
    expect(await page.evaluate(() => (window as unknown as { stayed?: boolean }).stayed)).toBe(true);

    // Revoke, with a confirm step.
    await Promise.all([page.waitForURL(/\/revoke$/), page.click(`#revoke-${workstationId}`)]);
    await until(() => page.locator('h1').textContent()).toBe('Revoke ws-panel?');
    await expectAccessible(page, 'revoke confirm');
    await page.click('#confirm-revoke');
    await until(() => row.locator('[data-col="status"]').textContent()).toBe('revoked');
    const creds = await h.api('/api/workstations/credentials', { token: h.adminToken });
    expect(
      creds.json.credentials.find((c: { workstation_id: string }) => c.workstation_id === workstationId)
        .revoked_at,
    ).not.toBeNull();

    // Sign out: the session ends on the server, so the old cookie value is refused too.
    const old = (await b.context.cookies(url)).find((c) => c.name === 'runt_session')!.value;
    await page.click('header form button');
    await until(() => new URL(page.url()).pathname).toBe('/sign-in');
    expect((await b.context.cookies(url)).find((c) => c.name === 'runt_session')).toBeUndefined();
    const replay = await fetch(`${url}/workstations`, {
      headers: { cookie: `runt_session=${old}`, accept: 'text/html' },
      redirect: 'manual',
    });
    expect(replay.status).toBe(303);
    expect(replay.headers.get('location')).toMatch(/^\/sign-in/);
    const fragment = await fetch(`${url}/workstations?fragment=1`, {
      headers: { cookie: `runt_session=${old}` },
      redirect: 'manual',
    });
    expect(fragment.status).toBe(401);

    // The token appeared in no page, and in no log line.
    expect(seenHtml.length).toBeGreaterThan(15);
    for (const html of seenHtml) expect(html).not.toContain(h.adminToken);
    expect(h.logs.join('\n')).not.toContain(h.adminToken);
  }, 240_000);
});
