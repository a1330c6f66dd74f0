import { ControlPlaneClient, type Run } from '@runt/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentError } from '../src/agent-error.js';
import { heartbeatLoop, LinkDownGrace, pollLoop } from '../src/agent-loops.js';
import { eventually, startTestControlPlane, testLogger, type TestControlPlane } from './control-plane.js';

let h: TestControlPlane;
beforeAll(async () => {
  h = await startTestControlPlane();
});
afterAll(async () => {
  await h?.close();
});

describe('pollLoop against a real control plane', () => {
  it('offers the runs offered to this workstation while the link is down, and stops when taking stops', async () => {
    await h.register(['poll-rt']);
    const { run } = await h.admin.submitRun({ runtime: 'poll-rt', command: ['x'] });
    await eventually(async () => (await h.admin.getRun(run.id)).run.status === 'offered', 'offered');
    const taking = new AbortController();
    const offered: Run[] = [];
    let linkUp = false;
    const loop = pollLoop({
      signal: taking.signal,
      pollIntervalMs: 30,
      linkUp: () => linkUp,
      hasCapacity: () => offered.length < 1,
      offered: () => h.ws.offeredRuns(h.workstationId),
      offer: async (r) => (offered.push(r), true),
      onFatal: (e) => {
        throw e;
      },
      setWake: () => undefined,
      logger: testLogger().logger,
    });
    await eventually(() => offered.length === 1, 'the offer');
    expect(offered[0]!.id).toBe(run.id);
    linkUp = true;
    taking.abort();
    await loop;
  });

  it('ends through onFatal when the credential is refused', async () => {
    const stranger = new ControlPlaneClient({
      url: h.url,
      token: 'rnt_ws_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
      nodeHttp: true,
    });
    const fatal: AgentError[] = [];
    await pollLoop({
      signal: new AbortController().signal,
      pollIntervalMs: 30,
      linkUp: () => false,
      hasCapacity: () => true,
      offered: () => stranger.offeredRuns(h.workstationId),
      offer: async () => true,
      onFatal: (e) => fatal.push(e),
      setWake: () => undefined,
      logger: testLogger().logger,
    });
    expect(fatal.map((e) => e.code)).toEqual(['unauthorized']);
  });

  it('cuts its wait short when woken', async () => {
    const taking = new AbortController();
    let wake: (() => void) | undefined;
    let polls = 0;
    const loop = pollLoop({
      signal: taking.signal,
      pollIntervalMs: 60_000,
      linkUp: () => false,
      hasCapacity: () => true,
      offered: async () => (polls++, { runs: [] }),
      offer: async () => true,
      onFatal: () => undefined,
      setWake: (w) => (wake = w),
      logger: testLogger().logger,
    });
    await eventually(() => polls === 1 && wake, 'the first poll');
    wake!();
    await eventually(() => polls === 2, 'the second poll');
    taking.abort();
    await loop;
  });
});

describe('LinkDownGrace: no HTTP herd when a fleet loses its links at once (issue 9)', () => {
  it('opens the HTTP fallback at a jittered moment after the drop, and not again once the link is back', () => {
    let now = 1_000;
    const draws = [0, 0.5, 1];
    const grace = new LinkDownGrace({
      minMs: 2_000,
      spreadMs: 10_000,
      random: () => draws.shift()!,
      now: () => now,
    });
    // Not linked yet at start: the first draw (0) gives the minimum.
    expect(grace.waitMs()).toBe(2_000);
    grace.up();
    expect(grace.waitMs()).toBe(0);
    now = 5_000;
    grace.down();
    expect(grace.waitMs()).toBe(7_000); // 2 s + 0.5 · 10 s
    now = 8_000;
    grace.down(); // a second report of the same drop does not restart the wait
    expect(grace.waitMs()).toBe(4_000);
    now = 12_000;
    expect(grace.waitMs()).toBe(0);
    grace.up();
    grace.down();
    expect(grace.waitMs()).toBe(12_000); // 2 s + 1 · 10 s
  });

  it('polls over HTTP only after the grace, and sends no heartbeat over HTTP within it', async () => {
    const taking = new AbortController();
    let polls = 0;
    let httpWait = 60_000;
    let wake: (() => void) | undefined;
    const loop = pollLoop({
      signal: taking.signal,
      pollIntervalMs: 20,
      httpWaitMs: () => httpWait,
      linkUp: () => false,
      hasCapacity: () => true,
      offered: async () => (polls++, { runs: [] }),
      offer: async () => true,
      onFatal: () => undefined,
      setWake: (w) => (wake = w),
      logger: testLogger().logger,
    });
    await eventually(() => wake, 'the loop waiting');
    await new Promise((r) => setTimeout(r, 200));
    expect(polls).toBe(0);
    httpWait = 0;
    wake!();
    await eventually(() => polls >= 2, 'polls once the grace is over');
    taking.abort();
    await loop;

    const life = new AbortController();
    let registrations = 0;
    let rounds = 0;
    const heartbeats = heartbeatLoop({
      signal: life.signal,
      intervalMs: 20,
      sendOverLink: () => (rounds++, false),
      registerHttp: async () => registrations++,
      httpWaitMs: () => (rounds < 5 ? 60_000 : 0),
      onFatal: () => undefined,
      logger: testLogger().logger,
    });
    await eventually(() => registrations >= 1, 'a registration over HTTP after the grace');
    expect(rounds).toBeGreaterThanOrEqual(5);
    life.abort();
    await heartbeats;
  });
});

describe('heartbeatLoop against a real control plane', () => {
  it('heartbeats over the link when it is up, else registers over HTTP; a refused credential ends it', async () => {
    const life = new AbortController();
    let linkUp = true;
    let overLink = 0;
    let overHttp = 0;
    const fatal: AgentError[] = [];
    let token = h.token;
    const loop = heartbeatLoop({
      signal: life.signal,
      intervalMs: 20,
      sendOverLink: () => linkUp && ++overLink > 0,
      registerHttp: async () => {
        overHttp++;
        const client = new ControlPlaneClient({ url: h.url, token, retries: 0 });
        await client
          .registerWorkstation({
            display_name: 'unit',
            cpu_count: 2,
            runtimes: ['fake'],
            agent_version: '0.0.0-test',
            listening: true,
          })
          .catch((e) => {
            throw new AgentError('unauthorized', (e as Error).message);
          });
      },
      onFatal: (e) => fatal.push(e),
      logger: testLogger().logger,
    });
    await eventually(() => overLink >= 2, 'heartbeats over the link');
    expect(overHttp).toBe(0);
    linkUp = false;
    await eventually(() => overHttp >= 2, 'registrations over HTTP');
    const seen = (await h.admin.listWorkstations()).workstations.find((w) => w.id === h.workstationId);
    expect(seen?.status).toBe('online');
    token = 'rnt_ws_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
    await loop;
    expect(fatal.map((e) => e.code)).toEqual(['unauthorized']);
    life.abort();
  });
});
