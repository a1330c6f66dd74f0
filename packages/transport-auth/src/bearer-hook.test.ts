import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import ky from 'ky';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearerHook } from './bearer-hook.js';
import { mintToken } from './mint-token.js';

let server: Server;
let base: string;

beforeAll(async () => {
  // Echoes the Authorization header it received.
  server = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ authorization: req.headers.authorization ?? null }));
  });
  await new Promise<void>((ready) => server.listen(0, '127.0.0.1', ready));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((done) => server.close(() => done()));
});

describe('bearerHook', () => {
  it('sends a fixed token', async () => {
    const t = mintToken('workstation');
    const body = await ky.get(base, { hooks: { beforeRequest: [bearerHook(t)] } }).json();
    expect(body).toEqual({ authorization: `Bearer ${t}` });
  });

  it('reads a token function at each request, and omits the header when it is undefined', async () => {
    let current: string | undefined;
    const api = ky.create({ prefixUrl: base, hooks: { beforeRequest: [bearerHook(() => current)] } });
    expect(await api.get('').json()).toEqual({ authorization: null });
    current = mintToken('admin');
    expect(await api.get('').json()).toEqual({ authorization: `Bearer ${current}` });
    current = mintToken('admin');
    expect(await api.get('').json()).toEqual({ authorization: `Bearer ${current}` });
  });
});
