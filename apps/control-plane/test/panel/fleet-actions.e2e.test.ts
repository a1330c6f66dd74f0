import { TEST_BACKENDS } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlaneClient } from '@runt/protocol';
import { startHarness, type Harness } from '../harness.js';
import { pairAgent, uniqueRuntime } from '../agent-double.js';
import { expectAccessible, launchBrowser, tabTo, type TestBrowser } from './browser.js';

const until = <T>(probe: () => Promise<T> | T, timeout = 20_000) =>
  expect.poll(probe, { timeout, interval: 100 });

/**
 * Drain and undrain from the fleet page in Chromium. The workstation's agent is a double that
 * registers over HTTP and keeps listening (a real agent exits on a drain), so the page can show
 * it draining and take the drain back.
 */
describe.each(TEST_BACKENDS)('fleet actions in Chromium on %s', (backend) => {
  let h: Harness;
  let b: TestBrowser;
  let admin: ControlPlaneClient;
  beforeAll(async () => {
    h = await startHarness(backend, {}, { schedulerTickMs: 60_000, sweepIntervalMs: 60_000 });
    admin = new ControlPlaneClient({ url: h.cp.url, token: h.adminToken, retries: 0 });
    b = await launchBrowser();
  });
  afterAll(async () => {
    await b?.close();
    await h?.close();
  }, 60_000);

  it('drains a workstation and takes the drain back with the keyboard; the queued run is then offered to it', async () => {
    const { page } = b;
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'undrain-me', [runtime]);
    await agent.registerHttp({ max_runs: 2 });

    await page.goto(`${h.cp.url}/sign-in`);
    await page.fill('#token', h.adminToken);
    await Promise.all([page.waitForURL(/\/workstations$/), page.press('#token', 'Enter')]);
    const status = page.locator(`#ws-${agent.workstationId} [data-col="status"]`);
    await until(() => status.textContent()).toBe('online');

    await Promise.all([page.waitForURL(/done=drained/), page.click(`#drain-${agent.workstationId}`)]);
    await until(() => status.textContent()).toBe('draining');
    const run = (await admin.submitRun({ runtime, command: ['x'] })).run;
    await h.cp.scheduler.pass();
    expect((await admin.getRun(run.id)).run.status).toBe('queued');
    await expectAccessible(page, 'workstations (draining)');

    // Keyboard only: Tab to the Undrain button and press Enter.
    await tabTo(page, `#undrain-${agent.workstationId}`);
    await Promise.all([page.waitForURL(/done=undrained/), page.keyboard.press('Enter')]);
    expect(await page.locator('.notice[role="status"]').textContent()).toContain('Undrained');
    await until(() => status.textContent()).toBe('online');
    expect(await page.locator(`#drain-${agent.workstationId}`).count()).toBe(1);
    // The undrain asked every scheduler for a pass (the tick is a minute here).
    await until(async () => (await admin.getRun(run.id)).run.status).toBe('offered');
    expect((await admin.getRun(run.id)).run.workstation_id).toBe(agent.workstationId);
  }, 120_000);

  it('refuses an undrain without a session or from another origin', async () => {
    const agent = await pairAgent(h, 'undrain-guarded', [uniqueRuntime()]);
    await agent.registerHttp();
    await admin.drainWorkstation(agent.workstationId);
    const noSession = await fetch(`${h.cp.url}/workstations/${agent.workstationId}/undrain`, {
      method: 'POST',
      headers: { origin: h.cp.url },
      redirect: 'manual',
    });
    expect(noSession.status).toBeGreaterThanOrEqual(300);
    const cookie = (await b.context.cookies(h.cp.url)).find((c) => c.name === 'runt_session');
    const forged = await fetch(`${h.cp.url}/workstations/${agent.workstationId}/undrain`, {
      method: 'POST',
      headers: { origin: 'http://evil.example', cookie: `runt_session=${cookie?.value ?? ''}` },
      redirect: 'manual',
    });
    expect(forged.status).toBe(403);
    const ws = (await admin.listWorkstations()).workstations.find((w) => w.id === agent.workstationId);
    expect(ws?.status).toBe('draining');
  });
});
