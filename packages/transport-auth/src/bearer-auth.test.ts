import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearerAuth, type AuthEnv, type Principal } from './bearer-auth.js';
import { hashToken } from './hash-token.js';
import { mintToken } from './mint-token.js';

// A real resolver over a real table of hashes; revocation deletes the row.
const admin = mintToken('admin');
const ws = mintToken('workstation');
const revoked = mintToken('workstation');
const table = new Map<string, Principal>([
  [hashToken(admin), { kind: 'admin', id: 'admin' }],
  [hashToken(ws), { kind: 'workstation', id: 'cred_1', workstationId: 'ws_1' }],
]);
const seenHashes: string[] = [];

let server: ServerType;
let base: string;

beforeAll(async () => {
  const app = new Hono<AuthEnv>();
  const resolve = async (hash: string) => {
    seenHashes.push(hash);
    return table.get(hash);
  };
  app.use('/admin/*', bearerAuth({ kinds: ['admin'], resolve }));
  app.use('/any/*', bearerAuth({ kinds: ['admin', 'workstation'], resolve }));
  app.get('/admin/whoami', (c) => c.json(c.get('principal')));
  app.get('/any/whoami', (c) => c.json(c.get('principal')));
  await new Promise<void>((ready) => {
    server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => ready());
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((done) => server.close(() => done()));
});

const get = (path: string, auth?: string) =>
  fetch(base + path, auth === undefined ? {} : { headers: { Authorization: auth } });

describe('bearerAuth over a listening server', () => {
  it('401 with WWW-Authenticate: Bearer when the header is missing', async () => {
    const r = await get('/admin/whoami');
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toBe('Bearer');
    expect(await r.json()).toEqual({ error: { code: 'unauthorized', message: 'missing bearer token' } });
  });

  it('401 for malformed tokens and other schemes, without calling the resolver', async () => {
    const before = seenHashes.length;
    for (const auth of ['Bearer', 'Bearer hunter2', `Basic ${admin}`, `Bearer ${admin} extra`, admin]) {
      const r = await get('/admin/whoami', auth);
      expect(r.status, auth).toBe(401);
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer\b/);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
    }
    expect(seenHashes.length).toBe(before);
  });

  it('401 for a well-formed but unknown or revoked token; the resolver sees only the hash', async () => {
    const r = await get('/any/whoami', `Bearer ${revoked}`);
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
    const body = (await r.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('unauthorized');
    expect(JSON.stringify(body)).not.toContain(revoked);
    expect(seenHashes.at(-1)).toBe(hashToken(revoked));
    expect(seenHashes.some((h) => h.includes('rnt_'))).toBe(false);
  });

  it('403 for a valid token of the wrong kind', async () => {
    const r = await get('/admin/whoami', `Bearer ${ws}`);
    expect(r.status).toBe(403);
    expect(r.headers.get('www-authenticate')).toBeNull();
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('forbidden');
  });

  it('200 with the principal for the right kind (scheme is case-insensitive)', async () => {
    const a = await get('/admin/whoami', `Bearer ${admin}`);
    expect(a.status).toBe(200);
    expect(await a.json()).toEqual({ kind: 'admin', id: 'admin' });
    const w = await get('/any/whoami', `bearer ${ws}`);
    expect(w.status).toBe(200);
    expect(await w.json()).toEqual({ kind: 'workstation', id: 'cred_1', workstationId: 'ws_1' });
  });

  it('refuses an empty kinds list at construction', () => {
    expect(() => bearerAuth({ kinds: [], resolve: async () => undefined })).toThrow(TypeError);
  });
});
