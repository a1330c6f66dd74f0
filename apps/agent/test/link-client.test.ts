import { getEventListeners } from 'node:events';
import { createServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { controlReplyMessageSchema, LINK_OPS, STATUS_STARTED_FORM } from '@runt/protocol';
import { LinkClient, replyOf, type LinkClientOptions } from '../src/link-client.js';
import { eventually, testLogger } from './control-plane.js';

// A real `ws` server that counts upgrades and, when `drop` is set, ends every link at once.
async function server(
  drop: boolean,
): Promise<{ url: string; opens: number[]; from: string[]; close: () => Promise<void> }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  const opens: number[] = [];
  const from: string[] = [];
  wss.on('connection', (ws, req) => {
    opens.push(performance.now());
    from.push(req.socket.remoteAddress ?? '');
    if (drop) ws.terminate();
  });
  await new Promise((r) => wss.once('listening', r));
  return {
    url: `http://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    opens,
    from,
    close: () => new Promise((r) => wss.close(() => r(undefined))),
  };
}

function client(url: LinkClientOptions['url'], o: Partial<LinkClientOptions>): LinkClient {
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

  it('comes back when a shedding control plane says, within a second, however many times it was shed', async () => {
    const server = createServer();
    server.on('upgrade', (_req, socket) =>
      socket.end(
        'HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
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
    void client(url, { startJitterMs: 0, random: () => 0.9, logger }).run(life.signal);
    const waits = () => lines.filter((l) => typeof l.retry_in_ms === 'number').map((l) => l.retry_in_ms);
    await eventually(() => waits().length >= 3, 'three shed dials');
    // Not the backoff's growing draw (0.9 of 0.5, 1, 2 s …, at least the Retry-After): its place in
    // the control plane's queue, 1 s, plus the draw's share of a second.
    expect(waits().slice(0, 3)).toEqual([1900, 1900, 1900]);
  });

  it('adds no abort listener per attempt: after 60 dropped links and 60 shed upgrades the signal holds at most one', async () => {
    const dropping = await server(true);
    const shedding = createServer();
    let shed = 0;
    shedding.on('upgrade', (_req, socket) => {
      shed++;
      socket.on('error', () => {}); // the client may reset it first (ECONNRESET, an unhandled error otherwise)
      socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    });
    await new Promise<void>((r) => shedding.listen(0, '127.0.0.1', r));
    const life = new AbortController();
    stops.push(
      () => life.abort(),
      dropping.close,
      () => new Promise<void>((r) => shedding.close(() => r())),
    );
    const shedUrl = `http://127.0.0.1:${(shedding.address() as AddressInfo).port}`;
    const counts: number[] = [];
    // Every attempt alternates between a server that drops the link and one that sheds the upgrade.
    let n = 0;
    const done = client(() => (n++ % 2 === 0 ? dropping.url : shedUrl), {
      startJitterMs: 0,
      maxBackoffMs: 1,
      random: () => 0,
      onAttempt: () => counts.push(getEventListeners(life.signal, 'abort').length),
    }).run(life.signal);
    await eventually(() => dropping.opens.length >= 60 && shed >= 60, '60 drops and 60 sheds', 20_000);
    expect(Math.max(...counts)).toBeLessThanOrEqual(1);
    expect(getEventListeners(life.signal, 'abort').length).toBeLessThanOrEqual(1);
    life.abort();
    await done;
    expect(getEventListeners(life.signal, 'abort')).toHaveLength(0);
  });
});

describe('LinkClient: localAddress and handshakeTimeoutMs', () => {
  it('dials from the local address it is given (the links bench spreads its doubles over 127.0.0.x)', async () => {
    const s = await server(false);
    const life = new AbortController();
    try {
      void client(s.url, { startJitterMs: 0, localAddress: '127.0.0.3' }).run(life.signal);
      await eventually(() => s.opens.length === 1, 'the link');
      expect(s.from).toEqual(['127.0.0.3']);
    } finally {
      life.abort();
      await s.close();
    }
  });

  it('gives up a dial whose upgrade is not answered within handshakeTimeoutMs', async () => {
    // Accepts the connection and never answers the upgrade.
    const silent = createNetServer((socket) => socket.on('error', () => {}));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const life = new AbortController();
    const attempts: number[] = [];
    const startedAt = performance.now();
    try {
      void client(`http://127.0.0.1:${(silent.address() as AddressInfo).port}`, {
        startJitterMs: 0,
        handshakeTimeoutMs: 300,
        onAttempt: (_url, opened) => {
          if (!opened) attempts.push(performance.now() - startedAt);
        },
      }).run(life.signal);
      await eventually(() => attempts.length === 1, 'the first attempt to fail');
      expect(attempts[0]).toBeGreaterThanOrEqual(290);
      expect(attempts[0]).toBeLessThan(5_000); // not the 10 s default
    } finally {
      life.abort();
      silent.close();
    }
  });
});

// Ops beyond the base set go over the link only to a control plane that lists them in
// `registered`: an older one closes a link that sends an op it does not know.
describe('LinkClient: link ops the control plane serves', () => {
  const stops: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop(); // links before their servers
  });

  /** A real `ws` server that answers `register` (listing `ops` when given) and every request with 200. */
  async function answering(ops: string[] | undefined): Promise<{ url: string; requests: string[] }> {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    const requests: string[] = [];
    wss.on('connection', (ws) =>
      ws.on('message', (d) => {
        const m = JSON.parse((d as Buffer).toString('utf8')) as { type: string; id?: string; op?: string };
        if (m.type === 'register')
          ws.send(JSON.stringify({ type: 'registered', workstation_id: 'ws_1', ...(ops ? { ops } : {}) }));
        if (m.type === 'request') {
          requests.push(m.op!);
          ws.send(JSON.stringify({ type: 'reply', id: m.id, status: 200, result: { handed_back: true } }));
        }
      }),
    );
    await new Promise((r) => wss.once('listening', r));
    stops.push(() => new Promise((r) => wss.close(() => r(undefined))));
    return { url: `http://127.0.0.1:${(wss.address() as AddressInfo).port}`, requests };
  }

  async function linked(url: string): Promise<LinkClient> {
    let registered = false;
    const link = client(url, {
      startJitterMs: 0,
      onMessage: (m) => (registered ||= m.type === 'registered'),
    });
    const ac = new AbortController();
    const running = link.run(ac.signal);
    stops.push(async () => {
      ac.abort();
      await running;
    });
    await eventually(() => registered, 'registered');
    return link;
  }

  it('sends hand-back over the link only when registered listed it; base ops always', async () => {
    const old = await answering(undefined);
    const oldLink = await linked(old.url);
    expect(await oldLink.request('hand-back', 'run_1', { fencing_token: 1 }, 5_000)).toBeUndefined();
    expect(await oldLink.request('release', 'run_1', { fencing_token: 1 }, 5_000)).toMatchObject({
      status: 200,
    });
    expect(old.requests).toEqual(['release']);

    const current = await answering(['claim', 'release', 'hand-back']);
    const link = await linked(current.url);
    expect(await link.request('hand-back', 'run_1', { fencing_token: 1 }, 5_000)).toMatchObject({
      status: 200,
      result: { handed_back: true },
    });
    expect(current.requests).toEqual(['hand-back']);
  });
});

describe('LinkClient: requests (issue 9: one deadline timer per link, replies checked by hand)', () => {
  it('times each request out at its own deadline with one timer for all, and resolves the answered ones', async () => {
    // Answers only the requests whose target starts with `answer`.
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    wss.on('connection', (ws) =>
      ws.on('message', (d) => {
        const m = JSON.parse((d as Buffer).toString('utf8')) as { type: string; id: string; target: string };
        if (m.type === 'request' && m.target.startsWith('answer'))
          ws.send(JSON.stringify({ type: 'reply', id: m.id, status: 200, result: { ok: m.target } }));
      }),
    );
    await new Promise((r) => wss.once('listening', r));
    const life = new AbortController();
    const link = client(`http://127.0.0.1:${(wss.address() as AddressInfo).port}`, { startJitterMs: 0 });
    try {
      void link.run(life.signal);
      await eventually(() => link.up, 'the link');
      const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
      const before = timers();
      const t0 = performance.now();
      const settledAt = (p: Promise<unknown>) =>
        p.then(
          (v) => ({ v, ms: performance.now() - t0 }),
          (e: Error) => ({ e: e.message, ms: performance.now() - t0 }),
        );
      const late = settledAt(link.request('status', 'silent_late', {}, 600));
      const quiet = Array.from({ length: 200 }, (_, i) =>
        settledAt(link.request('status', `silent_${i}`, {}, 300)),
      );
      const early = settledAt(link.request('status', 'silent_early', {}, 150));
      const answered = settledAt(link.request('status', 'answer_1', {}, 150));
      // 203 requests waiting and none keeps a timer of its own (the old client held one each).
      expect(timers() - before).toBeLessThanOrEqual(1);
      const a = await answered;
      expect(a).toMatchObject({ v: { type: 'reply', status: 200, result: { ok: 'answer_1' } } });
      const e = await early;
      expect(e).toMatchObject({ e: 'timed out' });
      expect(e.ms).toBeGreaterThanOrEqual(145);
      expect(e.ms).toBeLessThan(290);
      for (const q of await Promise.all(quiet)) {
        expect(q).toMatchObject({ e: 'timed out' });
        expect(q.ms).toBeGreaterThanOrEqual(295);
      }
      const l = await late;
      expect(l).toMatchObject({ e: 'timed out' });
      expect(l.ms).toBeGreaterThanOrEqual(595);
    } finally {
      life.abort();
      await new Promise((r) => wss.close(() => r(undefined)));
    }
  });

  it('takes exactly the replies the reply schema takes, as it parses them', () => {
    const ok = { type: 'reply', id: '7', status: 200, result: { run: { id: 'r' } } };
    const samples: unknown[] = [
      ok,
      { ...ok, extra: 1 },
      {
        type: 'reply',
        id: '8',
        status: 409,
        error: { code: 'conflict', message: 'fenced', details: { a: 1 }, x: 2 },
      },
      { type: 'reply', id: '9', status: 503, error: { code: 'busy', message: 'later' }, retry_after_s: 2 },
      { ...ok, status: 99 },
      { ...ok, status: 600 },
      { ...ok, status: 200.5 },
      { ...ok, status: '200' },
      { ...ok, id: 7 },
      { ...ok, retry_after_s: -1 },
      { ...ok, retry_after_s: 1.5 },
      { ...ok, error: 'no' },
      { ...ok, error: null },
      { ...ok, error: { code: 'x' } },
      { ...ok, error: { code: 1, message: 'm' } },
      { ...ok, type: 'offer' },
      null,
      [],
      'reply',
    ];
    for (const m of samples) {
      const want = controlReplyMessageSchema.safeParse(m);
      expect(replyOf(m), JSON.stringify(m)).toEqual(want.success ? want.data : undefined);
    }
  });
});

describe('LinkClient.serves: what the link’s control plane listed in `registered`', () => {
  const stops: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
  });

  /** A link server that answers `register` with `registered` listing `ops` (undefined: no list, as the oldest control planes). */
  async function registering(ops: string[] | undefined) {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    wss.on('connection', (ws) =>
      ws.on('message', () =>
        ws.send(JSON.stringify({ type: 'registered', workstation_id: 'ws_x', ...(ops ? { ops } : {}) })),
      ),
    );
    await new Promise((r) => wss.once('listening', r));
    return {
      url: `http://127.0.0.1:${(wss.address() as AddressInfo).port}`,
      close: () =>
        new Promise<void>((r) => {
          for (const c of wss.clients) c.terminate();
          wss.close(() => r());
        }),
    };
  }

  it.each([
    { what: 'lists the form', ops: [...Object.keys(LINK_OPS), STATUS_STARTED_FORM], expected: true },
    { what: 'lists only its ops (older)', ops: Object.keys(LINK_OPS), expected: false },
    { what: 'lists nothing (oldest)', ops: undefined, expected: false },
  ])('a control plane that $what: the start goes with the end: $expected', async ({ ops, expected }) => {
    const s = await registering(ops);
    const life = new AbortController();
    stops.push(() => life.abort(), s.close);
    const link = client(s.url, { startJitterMs: 0 });
    expect(link.serves(STATUS_STARTED_FORM)).toBe(false);
    void link.run(life.signal);
    await eventually(() => link.up, 'the link is up');
    await eventually(
      () => link.serves('claim') === (ops?.includes('claim') ?? false) && link.serves('hand-back') === !!ops,
      'the registered ops read',
    );
    expect(link.serves(STATUS_STARTED_FORM)).toBe(expected);
  });
});
