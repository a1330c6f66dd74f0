import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpTransport, jsonAnswer, TransportError } from './transport.js';

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(
    servers.splice(0).map((s) => {
      s.closeAllConnections();
      return new Promise((r) => s.close(r));
    }),
  );
});

async function listen(handler: Parameters<typeof createServer>[1]): Promise<{ url: string; server: Server }> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

describe('HttpTransport over a real server', () => {
  for (const keepAlive of [false, true]) {
    it(`sends token, query, JSON and bytes and reads the answer (${keepAlive ? 'node:http keep-alive' : 'fetch'})`, async () => {
      const seen: Array<{
        method?: string;
        url?: string;
        auth?: string;
        type?: string;
        body: string;
        socket: unknown;
      }> = [];
      const { url } = await listen((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          seen.push({
            method: req.method,
            url: req.url,
            auth: req.headers.authorization,
            type: req.headers['content-type'],
            body: Buffer.concat(chunks).toString(),
            socket: req.socket,
          });
          res.writeHead(200, { 'content-type': 'application/json', 'x-n': String(seen.length) });
          res.end(JSON.stringify({ n: seen.length }));
        });
      });
      const t = new HttpTransport({ url: `${url}/`, token: async () => 'rnt_ws_t', keepAlive });
      const a = await t.request({
        method: 'POST',
        path: 'api/x',
        query: { a: 1, b: undefined },
        json: { hello: 'world' },
      });
      const b = await t.send({ method: 'PUT', path: 'api/y', bytes: new Uint8Array([1, 2, 3]) });
      expect(a.json()).toEqual({ n: 1 });
      expect(b.header('x-n')).toBe('2');
      expect(seen.map(({ socket: _s, ...rest }) => rest)).toEqual([
        {
          method: 'POST',
          url: '/api/x?a=1',
          auth: 'Bearer rnt_ws_t',
          type: 'application/json',
          body: '{"hello":"world"}',
        },
        {
          method: 'PUT',
          url: '/api/y',
          auth: 'Bearer rnt_ws_t',
          type: 'application/octet-stream',
          body: '\u0001\u0002\u0003',
        },
      ]);
      if (keepAlive) expect(seen[1]!.socket).toBe(seen[0]!.socket);
    });
  }

  it('returns a retry answer whose Retry-After exceeds maxRetryAfterMs at once, and retries a short one', async () => {
    let hits = 0;
    const { url } = await listen((req, res) => {
      hits++;
      if (req.url === '/long') return res.writeHead(503, { 'retry-after': '120' }).end();
      if (hits < 3) return res.writeHead(429, { 'retry-after': '0' }).end();
      res.writeHead(204).end();
    });
    const t = new HttpTransport({ url, retry: { baseMs: 10, capMs: 20, maxRetryAfterMs: 5_000 } });
    expect((await t.request({ method: 'GET', path: 'short' })).status).toBe(204);
    expect(hits).toBe(3);
    expect((await t.request({ method: 'GET', path: 'long' })).status).toBe(503);
    expect(hits).toBe(4);
  });

  it('rejects with TransportError on timeout (not retried by default) and with the abort reason', async () => {
    const { url } = await listen(() => {});
    for (const keepAlive of [false, true]) {
      const t = new HttpTransport({ url, timeoutMs: 100, keepAlive });
      const err = await t.request({ method: 'GET', path: 'slow' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TransportError);
      expect(err).toMatchObject({ kind: 'timeout', reason: 'timed out' });
      const ac = new AbortController();
      const reason = new Error('stop');
      setTimeout(() => ac.abort(reason), 20);
      expect(
        await new HttpTransport({ url, keepAlive })
          .request({ method: 'GET', path: 'slow', signal: ac.signal })
          .catch((e: unknown) => e),
      ).toBe(reason);
    }
  });

  it('retries a refused connection, then names the reason', async () => {
    const { url, server } = await listen(() => {});
    await new Promise((r) => server.close(r));
    const started = performance.now();
    const err = await new HttpTransport({ url, retry: { retries: 2, baseMs: 50, capMs: 50 } })
      .request({ method: 'GET', path: 'x' })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'network', reason: 'ECONNREFUSED' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
  });
});

describe('jsonAnswer', () => {
  it('answers its JSON, an empty body and its headers by lower-case name, none inherited', () => {
    const a = jsonAnswer(429, { error: { code: 'busy' } }, { 'retry-after': '2' });
    expect(a).toMatchObject({ status: 429, statusText: '' });
    expect(a.json()).toEqual({ error: { code: 'busy' } });
    expect(a.body.byteLength).toBe(0);
    expect(a.header('Retry-After')).toBe('2');
    expect(a.header('content-type')).toBeUndefined();
    // A header name is not a property lookup: nothing comes from Object.prototype.
    expect(a.header('constructor')).toBeUndefined();
    expect(jsonAnswer(200, 1).header('constructor')).toBeUndefined();
    expect(jsonAnswer(200, 1).header('retry-after')).toBeUndefined();
  });
});
