import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { LinkClient, type LinkClientOptions } from '../src/link-client.js';
import { eventually, testLogger } from './control-plane.js';

// A real `ws` server that counts upgrades and, when `drop` is set, ends every link at once.
async function server(drop: boolean): Promise<{ url: string; opens: number[]; close: () => Promise<void> }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  const opens: number[] = [];
  wss.on('connection', (ws) => {
    opens.push(performance.now());
    if (drop) ws.terminate();
  });
  await new Promise((r) => wss.once('listening', r));
  return {
    url: `http://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    opens,
    close: () => new Promise((r) => wss.close(() => r(undefined))),
  };
}

function client(url: string, o: Partial<LinkClientOptions>): LinkClient {
  return new LinkClient({
    url,
    token: () => 'rnt_ws_x',
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
    ...o,
  });
}

describe('LinkClient: no thundering herd on a fleet start or a control-plane restart (issue 9)', () => {
  const stops: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
  });

  it('waits a random part of startJitterMs before its first dial', async () => {
    const s = await server(false);
    const life = new AbortController();
    stops.push(() => life.abort(), s.close);
    const startedAt = performance.now();
    void client(s.url, { startJitterMs: 400, random: () => 0.99 }).run(life.signal);
    await eventually(() => s.opens.length === 1, 'the first dial');
    expect(s.opens[0]! - startedAt).toBeGreaterThanOrEqual(390);
  });

  it('reconnects with full jitter: a draw of 0 waits 0 ms (equal jitter never waits under half the ceiling)', async () => {
    const s = await server(true);
    const life = new AbortController();
    stops.push(() => life.abort(), s.close);
    const { logger, lines } = testLogger();
    void client(s.url, { startJitterMs: 0, random: () => 0, logger }).run(life.signal);
    await eventually(() => s.opens.length >= 3, 'three links, each dropped');
    const retries = lines.filter((l) => typeof l.retry_in_ms === 'number').map((l) => l.retry_in_ms);
    expect(retries.length).toBeGreaterThanOrEqual(2);
    expect(retries.every((ms) => ms === 0)).toBe(true);
  });

  it('spreads the reconnects of a link that stays down over at most maxBackoffMs', async () => {
    const s = await server(true);
    await s.close(); // nothing listens: every dial is refused
    const life = new AbortController();
    stops.push(() => life.abort());
    const { logger, lines } = testLogger();
    void client(s.url, { startJitterMs: 0, random: () => 0.999, maxBackoffMs: 800, logger }).run(life.signal);
    await eventually(
      () => lines.filter((l) => typeof l.retry_in_ms === 'number').length >= 4,
      'four refused dials',
    );
    const retries = lines
      .filter((l) => typeof l.retry_in_ms === 'number')
      .map((l) => l.retry_in_ms as number);
    expect(retries.slice(0, 4)).toEqual([500, 799, 799, 799]); // 0.5 s doubling, capped at 800 ms
  });

  it('waits at least the Retry-After of a control plane that sheds its upgrade (503)', async () => {
    const server = createServer();
    server.on('upgrade', (_req, socket) =>
      socket.end(
        'HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
      ),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const life = new AbortController();
    stops.push(
      () => life.abort(),
      () => new Promise<void>((r) => server.close(() => r())),
    );
    const { logger, lines } = testLogger();
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    void client(url, { startJitterMs: 0, random: () => 0, logger }).run(life.signal);
    await eventually(() => lines.some((l) => typeof l.retry_in_ms === 'number'), 'a shed dial');
    expect(lines.find((l) => typeof l.retry_in_ms === 'number')).toMatchObject({
      http_status: 503,
      retry_in_ms: 2000,
    });
  });
});
