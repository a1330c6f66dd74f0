import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestHeader } from './request-header.js';

// A real node-server: each request answers what requestHeader read and what c.req.header()
// (the Fetch Headers) reads, for the names it was asked about, so the two can be compared.
let server: ServerType;
let port: number;
const NAMES = ['authorization', 'content-type', 'content-length', 'x-twice', 'x-absent'];

beforeAll(async () => {
  const app = new Hono();
  // Read ours first: the Fetch Headers are built on the first c.req.header() and must not be needed.
  app.all('/echo', (c) => {
    const ours = Object.fromEntries(NAMES.map((n) => [n, requestHeader(c, n) ?? null]));
    // @hono/node-server keeps the Headers it built under Symbol('headersKey').
    const key = Object.getOwnPropertySymbols(c.req.raw).find((s) => s.description === 'headersKey');
    const built = key === undefined ? undefined : (c.req.raw as unknown as Record<symbol, unknown>)[key];
    const fetchHeaders = Object.fromEntries(NAMES.map((n) => [n, c.req.header(n) ?? null]));
    return c.json({ ours, fetchHeaders, builtBefore: built !== undefined });
  });
  await new Promise<void>((ready) => {
    server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => ready());
  });
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((done) => server.close(() => done()));
});

/** Sends raw header pairs (duplicates and mixed case kept as given). */
function send(headers: string[], body = ''): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/echo',
        headers: ['Host', `127.0.0.1:${port}`, ...headers],
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += String(d)));
        res.on('end', () => resolve(JSON.parse(text) as Record<string, unknown>));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('requestHeader', () => {
  it('reads a header as c.req.header() does, without building the Fetch Headers', async () => {
    const r = await send(
      ['Authorization', 'Bearer abc', 'Content-Type', 'application/json', 'Content-Length', '2'],
      '{}',
    );
    expect(r.ours).toEqual({
      authorization: 'Bearer abc',
      'content-type': 'application/json',
      'content-length': '2',
      'x-twice': null,
      'x-absent': null,
    });
    expect(r.ours).toEqual(r.fetchHeaders);
    expect(r.builtBefore).toBe(false);
  });

  it('joins a header sent several times with ", " in order, as the Fetch Headers do', async () => {
    const r = await send([
      'X-Twice',
      'one',
      'x-TWICE',
      'two',
      'authorization',
      'Bearer a',
      'Authorization',
      'Bearer b',
    ]);
    expect(r.ours).toMatchObject({ 'x-twice': 'one, two', authorization: 'Bearer a, Bearer b' });
    expect(r.ours).toEqual(r.fetchHeaders);
  });

  it('falls back to c.req.header() off node-server (app.request in tests)', async () => {
    const app = new Hono();
    app.get('/', (c) => c.text(requestHeader(c, 'x-one') ?? 'none'));
    expect(await (await app.request('/', { headers: { 'X-One': 'yes' } })).text()).toBe('yes');
    expect(await (await app.request('/')).text()).toBe('none');
  });
});
