import { mkdtempSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, startControlPlane, type RunningControlPlane } from '@runt/control-plane';
import { createTestDatabase, type TestDatabase } from '@runt/sql/testing';
import { mintToken } from '@runt/transport-auth';
import { LinkDownGrace } from '../src/agent-loops.js';
import { agentStateDir, eventually, pairWorkstation, testAgent, testLogger } from './control-plane.js';

/**
 * A real HTTP proxy in front of the control plane that notes every request it forwards (when,
 * method and path) and pipes link upgrades through — or, with `refuseUpgrades`, answers them
 * `502` itself, as a proxy whose control plane is gone does.
 */
async function countingProxy(target: string) {
  const requests: Array<{ at: number; method: string; path: string }> = [];
  const o = { refuseUpgrades: false };
  const server: Server = createServer((req, res) => {
    requests.push({ at: performance.now(), method: req.method ?? '', path: req.url ?? '' });
    const up = request(
      new URL(req.url!, target),
      { method: req.method, headers: { ...req.headers, host: new URL(target).host } },
      (answer: IncomingMessage) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.on('upgrade', (req: IncomingMessage, socket, head: Buffer) => {
    socket.on('error', () => undefined);
    if (o.refuseUpgrades)
      return void socket.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    const { hostname, port } = new URL(target);
    const cp = connect(Number(port), hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2)
        lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      cp.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) cp.write(head);
      cp.pipe(socket).pipe(cp);
    });
    cp.on('error', () => socket.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    o,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** The agent's HTTP fallback: polls for offered runs and registrations (its heartbeat over HTTP). */
const isFallback = (r: { method: string; path: string }) =>
  (r.method === 'GET' && /\/runs\?.*status=offered/.test(r.path)) ||
  (r.method === 'POST' && r.path === '/api/workstations');

describe('an agent shed with a Retry-After holds its HTTP fallback until then (issue 9)', () => {
  let t: TestDatabase;
  let cp: RunningControlPlane;
  const adminToken = mintToken('admin');
  beforeAll(async () => {
    t = await createTestDatabase('pglite');
    // Every upgrade is shed at once (no place, no wait), each told its place in a queue drained
    // at one link every 2 s: the first is told `Retry-After: 3`, the next ones 3 s or more.
    cp = await startControlPlane(
      loadConfig(
        {},
        {
          host: '127.0.0.1',
          port: 0,
          adminToken,
          dataDir: mkdtempSync(join(tmpdir(), 'runt-agent-shed-')),
          logLevel: 'warn',
          schedulerTickMs: 50,
        },
      ),
      {
        db: t.db,
        linkMaxOpening: 0,
        linkMaxWaiting: 0,
        linkShedPacePerSecond: 0.5,
        logDestination: new Writable({ write: (_c, _e, cb) => cb() }),
      },
    );
  });
  afterAll(async () => {
    await cp?.close();
    await t?.dispose();
  });

  it('sends no HTTP poll before the Retry-After, and polls once a re-dial finds no control plane', async () => {
    const { token } = await pairWorkstation(cp.url, adminToken, 'shed');
    const proxy = await countingProxy(cp.url);
    const { logger, lines } = testLogger();
    // Its own grace would open HTTP 100 ms after start (poll interval, no spread): only the
    // Retry-After holds it back.
    const agent = testAgent({
      url: proxy.url,
      token,
      stateDir: agentStateDir('runt-agent-shed-'),
      pollIntervalMs: 100,
      heartbeatIntervalMs: 100,
      linkJitter: { startMs: 0, downSpreadMs: 0 },
      logger,
    });
    const running = agent.run();
    try {
      await eventually(() => lines.find((l) => l.http_status === 503), 'the first shed upgrade');
      const shedAt = performance.now();
      const shed = lines.find((l) => l.http_status === 503)!;
      const retryInMs = shed.retry_in_ms as number;
      expect(retryInMs).toBeGreaterThanOrEqual(3_000);
      // Until the told time has passed and the re-dial made then was shed again, not one HTTP
      // poll nor registration (the agent's own grace opened HTTP long before).
      await eventually(() => lines.filter((l) => l.http_status === 503).length >= 2, 'the re-dial shed');
      expect(performance.now() - shedAt).toBeGreaterThanOrEqual(retryInMs - 100); // shedAt: read up to 20 ms late
      expect(proxy.requests.filter((r) => r.at > shedAt && isFallback(r))).toEqual([]);

      // The control plane goes (its proxy answers upgrades 502, no time): the hold ends at the
      // next dial, and the agent falls back to HTTP.
      proxy.o.refuseUpgrades = true;
      const refusedAt = performance.now();
      await eventually(
        () => proxy.requests.some((r) => r.at > refusedAt && isFallback(r)),
        'an HTTP poll once the re-dial found no control plane',
      );
    } finally {
      await agent.shutdown({ graceMs: 0 });
      await running.catch(() => undefined);
      await proxy.close();
    }
  }, 30_000);
});

describe('LinkDownGrace.hold: a shed link holds the fallback past its grace (issue 9)', () => {
  it('waits out the later of the grace and the hold; a release leaves the grace', () => {
    let now = 0;
    const grace = new LinkDownGrace({ minMs: 2_000, spreadMs: 0, now: () => now });
    grace.hold(30_000);
    expect(grace.waitMs()).toBe(30_000);
    now = 10_000;
    expect(grace.waitMs()).toBe(20_000);
    grace.hold(5_000); // shed again: the new place
    expect(grace.waitMs()).toBe(5_000);
    expect(grace.release()).toBe(true);
    expect(grace.release()).toBe(false);
    expect(grace.waitMs()).toBe(0); // the grace (2 s from 0) is long over
    grace.hold(30_000);
    grace.up();
    expect(grace.waitMs()).toBe(0); // linked: nothing to hold
    grace.down();
    expect(grace.waitMs()).toBe(2_000); // the hold went with the link's up
  });
});
