import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Agent } from '../src/agent.js';
import { eventually, startTestControlPlane, testAgent, type TestControlPlane } from './control-plane.js';

/** A series of the control plane's /metrics, summed over the lines that start with `prefix`. */
async function metric(url: string, prefix: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(prefix))
    .reduce((s, l) => s + Number(l.split(' ').pop()), 0);
}

/** HTTP offer polls (and any other page of the workstation's runs) the control plane served. */
const offerPolls = (url: string) =>
  metric(url, 'runt_cp_http_requests_total{method="GET",route="/api/workstations/:id/runs"');

// A freed slot wakes the HTTP poll loop only while the link is down (7d53743): with the link up
// offers come over the link and the agent asks nothing over HTTP; with it down the agent asks for
// offers as soon as a run ends, not at its next timed poll (20 s here, far beyond the test's wait).
// Fails when a freed slot does not wake the loop with the link down, or when a wake polls with the
// link up. (Reverting 7d53743 alone changes no request: the loop it woke with the link up made none.)
describe.each(TEST_BACKENDS)('a freed slot and the HTTP poll loop on %s', (backend) => {
  let t: TestControlPlane;
  let agent: Agent | undefined;
  let running: Promise<void> | undefined;
  let dir: string;

  beforeEach(async () => {
    t = await startTestControlPlane(backend);
    dir = mkdtempSync(join(tmpdir(), 'runt-poll-wake-'));
  });

  afterEach(async () => {
    await agent?.shutdown({ graceMs: 0 });
    await running?.catch(() => undefined);
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function runToEnd(id: string): Promise<void> {
    await eventually(
      async () => (await t.admin.getRun(id)).run.status === 'completed',
      'the run to complete',
      30_000,
    );
  }

  it('with the link down, a run that ends makes the agent ask for offers at once', async () => {
    // Offered before the agent starts: its first poll finds it.
    await t.register(['fake']);
    // A run that lasts until the test ends it (cancel): the poll count is read while it runs,
    // however slow the machine (a short sleep could end, and wake its poll, before the read).
    const { run } = await t.admin.submitRun({
      runtime: 'fake',
      command: ['/bin/sh', '-c', 'sleep infinity'],
    });
    await eventually(async () => (await t.admin.getRun(run.id)).run.status === 'offered', 'the offer');
    agent = testAgent({
      url: t.url,
      token: t.token,
      maxRuns: 1,
      link: false,
      pollIntervalMs: 20_000,
      stateDir: dir,
    });
    running = agent.run();
    await eventually(async () => (await t.admin.getRun(run.id)).run.status === 'running', 'the run to start');
    const before = await offerPolls(t.url);
    await t.admin.cancelRun(run.id);
    await eventually(
      async () => (await t.admin.getRun(run.id)).run.status === 'cancelled',
      'the run to end',
      30_000,
    );
    await eventually(
      async () => (await offerPolls(t.url)) > before,
      'an offer poll after the run ended',
      5_000,
    );
  }, 60_000);

  it('with the link up, runs that end make no HTTP offer poll', async () => {
    agent = testAgent({ url: t.url, token: t.token, maxRuns: 1, pollIntervalMs: 20_000, stateDir: dir });
    running = agent.run();
    await eventually(async () => (await metric(t.url, 'runt_cp_agent_links')) === 1, 'the link');
    const before = await offerPolls(t.url);
    for (let i = 0; i < 3; i++) {
      const { run } = await t.admin.submitRun({ runtime: 'fake', command: ['/bin/sh', '-c', 'exit 0'] });
      await runToEnd(run.id);
    }
    await new Promise((r) => setTimeout(r, 500));
    expect(await offerPolls(t.url)).toBe(before);
  }, 60_000);
});
