import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { ControlPlaneClient, isApiError } from '@runt/protocol';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../src/agent.js';
import { LinkClient } from '../src/link-client.js';
import { linkVia } from '../src/link-via.js';
import {
  eventually,
  startTestControlPlane,
  testLogger,
  testAgent,
  type TestControlPlane,
} from './control-plane.js';

/** Sums the samples of a /metrics counter whose line matches `match` (all of its labels by default). */
async function metric(url: string, name: string, match: RegExp = /.*/): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => (l.startsWith(`${name} `) || l.startsWith(`${name}{`)) && match.test(l))
    .reduce((s, l) => s + Number(l.split(' ').pop()), 0);
}

/** HTTP requests to the fenced run endpoints (the calls a linked agent makes over its link instead). */
const FENCED_ROUTES =
  /route="\/api\/(runs\/:id\/(claim|heartbeat|events|status|release)|commands\/:id\/(ack|status))"/;

const RUNS = 30;

describe.each(TEST_BACKENDS)('an agent’s run calls over its link on %s', (backend) => {
  let t: TestControlPlane;
  let dir: string;
  let agent: Agent;
  let running: Promise<void>;

  beforeAll(async () => {
    t = await startTestControlPlane(backend);
    dir = mkdtempSync(join(tmpdir(), 'runt-link-ops-'));
  });

  afterAll(async () => {
    await agent?.shutdown({ graceMs: 0 });
    await running?.catch(() => undefined);
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('claims, reports and finishes runs with no HTTP request to a fenced endpoint while linked', async () => {
    agent = testAgent({
      url: t.url,
      token: t.token,
      maxRuns: 3,
      leaseMs: 3_000,
      stateDir: dir,
    });
    running = agent.run();
    await eventually(
      async () => (await metric(t.url, 'runt_cp_link_messages_received_total', /type="register"/)) >= 1,
      'the agent linked and registered',
    );
    const http = await metric(t.url, 'runt_cp_http_requests_total', FENCED_ROUTES);
    const linkOps = await metric(t.url, 'runt_cp_link_requests_total');
    // Status reports answered 200 on either transport: a linked agent sends them over its link,
    // but one in flight when the link drops (a heavily loaded machine can miss heartbeats) is
    // rightly sent again over HTTP, and the bounds below are per run, whatever carried them.
    const STATUS_OK = /op="status",status="200"/;
    const HTTP_STATUS_OK = /route="\/api\/runs\/:id\/status".*status="200"/;
    const statusReports = async () =>
      (await metric(t.url, 'runt_cp_link_requests_total', STATUS_OK)) +
      (await metric(t.url, 'runt_cp_http_requests_total', HTTP_STATUS_OK));
    const reportsBefore = await statusReports();
    // Event appends on either transport: none for these runs (no output), whose `started` event
    // goes with the `running` report or the end's (`holdForReport`); before, a run outliving the
    // report's delay sent it alone, on the linger timer armed just before the report's.
    const EVENTS = /op="events"|route="\/api\/runs\/:id\/events"/;
    const appends = async () =>
      (await metric(t.url, 'runt_cp_link_requests_total', EVENTS)) +
      (await metric(t.url, 'runt_cp_http_requests_total', EVENTS));
    const appendsBefore = await appends();
    // A few runs long enough for lease renewals (every leaseMs / 3 = 1 s), the rest short.
    const ids: string[] = [];
    for (let i = 0; i < RUNS; i++) {
      const { run } = await t.admin.submitRun({
        runtime: 'fake',
        command: i < 3 ? ['sleep', '2.5'] : ['true'],
      });
      ids.push(run.id);
    }
    await eventually(
      async () => {
        const states = await Promise.all(ids.map(async (id) => (await t.admin.getRun(id)).run.status));
        return states.every((s) => s === 'completed');
      },
      'every run completed',
      120_000,
    );
    // Every fenced call went over the link (unless the link dropped and came back meanwhile, when
    // a call in flight is rightly sent again over HTTP: then the link registered twice).
    const linkCounters = async () =>
      (await (await fetch(`${t.url}/metrics`)).text())
        .split('\n')
        .filter((l) => FENCED_ROUTES.test(l) || l.startsWith('runt_cp_link_'))
        .join('\n');
    const seen = await linkCounters();
    if ((await metric(t.url, 'runt_cp_link_messages_received_total', /type="register"/)) === 1)
      expect(await metric(t.url, 'runt_cp_http_requests_total', FENCED_ROUTES), seen).toBe(http);
    // One status report per short run (its start goes with its end: it ended before its
    // `running` report was due), two per long one (running, then the end); every run has its start.
    // Counted once answered: on Postgres a report that rode a pass is visible (the run completed)
    // at the pass's asynchronous COMMIT and answered after its WAL flush, so the last batch (the
    // three long runs end together) may still be in flight when the runs read completed.
    const reportsNow = async () => (await statusReports()) - reportsBefore;
    await eventually(
      async () => {
        const n = await reportsNow();
        if (n >= RUNS + 3) return true;
        throw new Error(`${n} of ${RUNS + 3} answered; counters:\n${await linkCounters()}`);
      },
      'every status report answered',
      10_000,
    );
    const reports = await reportsNow();
    expect(reports).toBeGreaterThanOrEqual(RUNS + 3);
    expect(reports).toBeLessThan(2 * RUNS);
    for (const id of ids) expect((await t.admin.getRun(id)).run.started_at).not.toBeNull();
    expect((await appends()) - appendsBefore, seen).toBe(0);
    for (const id of ids.slice(0, 3)) {
      const { events } = await t.admin.listEvents(id, { after_seq: 0 });
      expect(events.filter((e) => e.type === 'backend_status').map((e) => e.payload.state)).toContain(
        'started',
      );
    }
    expect(await metric(t.url, 'runt_cp_link_requests_total', /op="heartbeat",status="200"/)).toBeGreaterThan(
      0,
    );
    expect((await metric(t.url, 'runt_cp_link_requests_total')) - linkOps).toBeGreaterThanOrEqual(RUNS + 3);
  }, 180_000);
});

describe('a run call in flight when the link drops', () => {
  let t: TestControlPlane;
  let fake: WebSocketServer;
  let link: LinkClient;
  const stop = new AbortController();
  /** What the fake link does with the next request: answer it with a 409, or drop the link. */
  let mode: 'conflict' | 'drop' = 'drop';
  const requests: Array<{ op: string; target: string }> = [];

  beforeAll(async () => {
    t = await startTestControlPlane();
    fake = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    fake.on('connection', (ws: WebSocket) => {
      ws.on('message', (data) => {
        const m = JSON.parse((data as Buffer).toString('utf8')) as {
          type: string;
          id: string;
          op: string;
          target: string;
        };
        if (m.type !== 'request') return;
        requests.push({ op: m.op, target: m.target });
        if (mode === 'drop') return ws.terminate();
        ws.send(
          JSON.stringify({
            type: 'reply',
            id: m.id,
            status: 409,
            error: { code: 'runner-lease-conflict', message: 'from the fake link' },
          }),
        );
      });
    });
    await new Promise((r) => fake.once('listening', r));
    const port = (fake.address() as AddressInfo).port;
    link = new LinkClient({
      url: `http://127.0.0.1:${port}`,
      token: () => t.token,
      register: () => ({
        type: 'register',
        workstation: {
          display_name: 'x',
          cpu_count: 1,
          runtimes: ['fake'],
          agent_version: '0',
          listening: true,
        },
        running_run_ids: [],
      }),
      onMessage: () => {},
      onUp: () => {},
      onFatal: () => {},
      logger: testLogger().logger,
      maxBackoffMs: 200,
      startJitterMs: 0,
    });
    void link.run(stop.signal);
  });

  afterEach(() => {
    mode = 'drop';
  });

  afterAll(async () => {
    stop.abort();
    await new Promise((r) => fake.close(r));
    await t.close();
  });

  it('is sent again over HTTP and answered there; while linked, the link’s answer is the answer', async () => {
    const client = new ControlPlaneClient({
      url: t.url,
      token: t.token,
      nodeHttp: true,
      via: linkVia(() => link),
    });
    const claim = await t.claimRun({ runtime: 'fake', command: ['true'] });
    const body = { fencing_token: claim.fencing_token, lease_ms: 30_000 };
    const http = () => metric(t.url, 'runt_cp_http_requests_total', /route="\/api\/runs\/:id\/heartbeat"/);

    await eventually(() => link.up, 'the link up');
    mode = 'conflict';
    const before = await http();
    const refused = await client.heartbeatRun(claim.run.id, body).catch((e: unknown) => e);
    expect(isApiError(refused) && refused.status === 409 && refused.code === 'runner-lease-conflict').toBe(
      true,
    );
    expect(await http()).toBe(before); // answered by the link alone

    mode = 'drop';
    const renewed = await client.heartbeatRun(claim.run.id, body);
    expect(renewed.cancel_requested).toBe(false);
    expect(requests.at(-1)).toEqual({ op: 'heartbeat', target: claim.run.id });
    expect(await http()).toBe(before + 1); // the dropped request, sent again over HTTP

    // The next call while the link is still down goes straight to HTTP.
    if (!link.up) {
      const n = requests.length;
      await client.heartbeatRun(claim.run.id, body);
      expect(requests.length).toBe(n);
      expect(await http()).toBe(before + 2);
    }
  });
});
