import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlPlaneClient } from './client.js';
import { isApiError } from './errors.js';

const servers: ServerType[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

async function listen(app: Hono): Promise<string> {
  const server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const workstation = {
  id: 'ws_1',
  display_name: 'box',
  hostname: null,
  status: 'online',
  listening: false,
  last_seen_at: null,
  cpu_count: 2,
  memory_bytes: null,
  max_runs: null,
  runtimes: [],
  labels: {},
  agent_version: '0.1.0',
  created_at: '2026-01-01T00:00:00.000Z',
};

describe('ControlPlaneClient over a real server', () => {
  it('sends the bearer token and validates the answer', async () => {
    let seen: string | undefined;
    const url = await listen(
      new Hono().get('/api/workstations', (c) => {
        seen = c.req.header('authorization');
        return c.json({ workstations: [workstation] });
      }),
    );
    const out = await new ControlPlaneClient({ url, token: 'rnt_ws_x' }).listWorkstations();
    expect(seen).toBe('Bearer rnt_ws_x');
    expect(out.workstations[0]?.id).toBe('ws_1');
  });

  it('turns an error answer into an ApiError with the server code and message', async () => {
    const url = await listen(
      new Hono().get('/api/workstations', (c) =>
        c.json({ error: { code: 'forbidden', message: 'admins only' } }, 403),
      ),
    );
    const err = await new ControlPlaneClient({ url }).listWorkstations().catch((e: unknown) => e);
    expect(isApiError(err, 'forbidden')).toBe(true);
    expect((err as Error).message).toBe('admins only');
  });

  it('honours 429 Retry-After and then succeeds', async () => {
    const hits: number[] = [];
    const url = await listen(
      new Hono().get('/api/workstations', (c) => {
        hits.push(Date.now());
        if (hits.length === 1)
          return c.json({ error: { code: 'rate-limited', message: 'slow down' } }, 429, {
            'Retry-After': '1',
          });
        return c.json({ workstations: [] });
      }),
    );
    const out = await new ControlPlaneClient({ url }).listWorkstations();
    expect(out.workstations).toEqual([]);
    expect(hits).toHaveLength(2);
    expect(hits[1]! - hits[0]!).toBeGreaterThanOrEqual(900);
  });

  it('gives up on a persistent 429 with the server message', async () => {
    const url = await listen(
      new Hono().get('/api/workstations', (c) =>
        c.json({ error: { code: 'rate-limited', message: 'slow down' } }, 429, { 'Retry-After': '0' }),
      ),
    );
    const err = await new ControlPlaneClient({ url, retries: 1 }).listWorkstations().catch((e: unknown) => e);
    expect(isApiError(err, 'rate-limited')).toBe(true);
  });

  it('says in one line when the control plane cannot be reached', async () => {
    const url = await listen(new Hono());
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
    const err = await new ControlPlaneClient({ url, retries: 0 }).listWorkstations().catch((e: unknown) => e);
    expect(isApiError(err, 'unreachable')).toBe(true);
    expect((err as Error).message).toMatch(new RegExp(`^cannot reach ${url}: ECONNREFUSED$`));
  });
});
