import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlaneClient } from '@runt/protocol';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { REGISTRATION_SCHEDULE_EVERY_MS } from '../src/link/link-registrations.js';
import { startHarness, type Harness } from './harness.js';
import { pairAgent, uniqueRuntime, type AgentDouble } from './agent-double.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Issue 9: a fleet re-linking after a restart registers thousands of links a second, in batches a
// few milliseconds apart. A scheduling pass per registration (or per batch) kept the database busy
// with passes over an unchanged queue; listening registrations now share one pass per
// REGISTRATION_SCHEDULE_EVERY_MS, and registrations that are not listening cause none.
describe.each(TEST_BACKENDS)('scheduling passes caused by link registrations on %s', (backend) => {
  let h: Harness;
  let admin: ControlPlaneClient;
  let passes = 0;
  const agents: AgentDouble[] = [];
  beforeAll(async () => {
    // No tick within the test: every pass counted is one a registration asked for.
    h = await startHarness(backend, {}, { schedulerTickMs: 600_000 });
    admin = new ControlPlaneClient({ url: h.cp.url, token: h.adminToken, retries: 0 });
    for (let i = 0; i < 20; i++) agents.push(await pairAgent(h, `passes-${i}`, ['fake']));
    // Count each pass's locked part: kicks run it directly (since c871322 the next pass starts
    // once the last COMMIT returned, before its flush and delivery), `pass()` goes through it too.
    const scheduler = h.cp.scheduler as unknown as { passLocked: () => Promise<unknown> };
    const passLocked = scheduler.passLocked.bind(scheduler);
    scheduler.passLocked = () => {
      passes++;
      return passLocked();
    };
  });
  afterAll(async () => h?.close());

  /** Passes started while `fn` runs and until the window after it has closed. */
  async function passesDuring(fn: () => Promise<void>): Promise<number> {
    await sleep(REGISTRATION_SCHEDULE_EVERY_MS * 2);
    const before = passes;
    await fn();
    await sleep(REGISTRATION_SCHEDULE_EVERY_MS * 3);
    return passes - before;
  }

  it('20 links registering one after another that are not listening cause no pass', async () => {
    const n = await passesDuring(async () => {
      for (const a of agents) {
        await a.connect({ listening: false });
        await sleep(5);
      }
    });
    expect(n).toBe(0);
    for (const a of agents) a.link!.close();
    for (const a of agents) await a.waitClosed();
  });

  it('20 listening links registering one after another share a pass per window, not one each', async () => {
    let took = 0;
    const n = await passesDuring(async () => {
      const started = performance.now();
      for (const a of agents) {
        await a.connect();
        await sleep(5);
      }
      took = performance.now() - started;
    });
    expect(n).toBeGreaterThanOrEqual(1);
    // One at once, then at most one per window while they keep coming, and one at the end
    // (≈ 5 for the ≈ 300 ms this takes on an idle machine; a slow one stretches the windows).
    expect(n).toBeLessThanOrEqual(Math.ceil(took / REGISTRATION_SCHEDULE_EVERY_MS) + 2);
    expect(n).toBeLessThan(agents.length);
    for (const a of agents) a.link!.close();
    for (const a of agents) await a.waitClosed();
  });

  it('a queued run that only a new agent can take is offered to it when it links, without waiting for a tick', async () => {
    const runtime = uniqueRuntime();
    const { run } = await admin.submitRun({ runtime, command: ['x'] });
    const agent = await pairAgent(h, 'passes-new', [runtime]);
    await agent.connect();
    const offer = await agent.waitFor('offer', (m) => m.run.id === run.id);
    expect(offer).toMatchObject({ id: run.id, run: { workstation_id: agent.workstationId } });
  });
});
