import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlPlaneClient } from './client.js';
import { isApiError } from './errors.js';
import { sampleRun } from './testing.js';

// The `nodeHttp` transport (what the agent uses) must behave like the fetch one: headers,
// bodies, query strings, retries, error mapping and validation.
const servers: ServerType[] = [];
afterEach(async () => {
  await Promise.all(
    servers.splice(0).map((s) => {
      (s as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      return new Promise((r) => s.close(r));
    }),
  );
});

async function listen(app: Hono): Promise<string> {
  const server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const run = sampleRun({ created_at: 'x' });

describe('ControlPlaneClient with nodeHttp', () => {
  it('sends the token (read per call), the JSON body and the query, and validates the answer', async () => {
    const seen: Array<{ auth?: string; type?: string; body: unknown; q?: string }> = [];
    const url = await listen(
      new Hono()
        .post('/api/runs/:id/claim', async (c) => {
          seen.push({
            auth: c.req.header('authorization'),
            type: c.req.header('content-type'),
            body: await c.req.json(),
          });
          return c.json({
            fencing_token: 7,
            expires_at: 'x',
            run,
            next_event_seq: 1,
            pending_commands: false,
          });
        })
        .get('/api/workstations/:id/runs', (c) => {
          seen.push({ auth: c.req.header('authorization'), body: null, q: c.req.query('status') });
          return c.json({ runs: [run], next_cursor: null });
        }),
    );
    let token = 'rnt_ws_a';
    const client = new ControlPlaneClient({ url, token: () => token, nodeHttp: true });
    expect(await client.claimRun('run_1', { runner_id: 'r', lease_ms: 30_000 })).toMatchObject({
      fencing_token: 7,
      pending_commands: false,
      run: { id: 'run_1' },
    });
    token = 'rnt_ws_b';
    expect((await client.offeredRuns('ws_1')).runs).toHaveLength(1);
    expect(seen).toEqual([
      { auth: 'Bearer rnt_ws_a', type: 'application/json', body: { runner_id: 'r', lease_ms: 30_000 } },
      { auth: 'Bearer rnt_ws_b', body: null, q: 'offered' },
    ]);
  });

  it('turns error answers into ApiErrors and an unexpected answer into invalid-response', async () => {
    const url = await listen(
      new Hono()
        .get('/api/workstations', (c) =>
          c.json({ error: { code: 'forbidden', message: 'admins only' } }, 403),
        )
        .get('/api/runs/:id', (c) => c.json({ nope: true }))
        .get('/api/runs', (c) => c.text('teapot', 418)),
    );
    const client = new ControlPlaneClient({ url, nodeHttp: true });
    const forbidden = await client.listWorkstations().catch((e: unknown) => e);
    expect(isApiError(forbidden, 'forbidden')).toBe(true);
    expect((forbidden as Error).message).toBe('admins only');
    expect(isApiError(await client.getRun('run_1').catch((e: unknown) => e), 'invalid-response')).toBe(true);
    const other = await client.listRuns().catch((e: unknown) => e);
    expect(other).toMatchObject({ status: 418, code: 'http-error' });
  });

  it('retries 429 (Retry-After) and 503, and gives up on a persistent one with the server message', async () => {
    let hits = 0;
    const url = await listen(
      new Hono()
        .get('/api/workstations', (c) => {
          hits++;
          if (hits === 1)
            return c.json({ error: { code: 'rate-limited', message: 'slow down' } }, 429, {
              'Retry-After': '0',
            });
          if (hits === 2) return c.json({ error: { code: 'unavailable', message: 'busy' } }, 503);
          return c.json({ workstations: [] });
        })
        .get('/api/workstations/credentials', (c) =>
          c.json({ error: { code: 'rate-limited', message: 'slow down' } }, 429, { 'Retry-After': '0' }),
        ),
    );
    expect((await new ControlPlaneClient({ url, nodeHttp: true }).listWorkstations()).workstations).toEqual(
      [],
    );
    expect(hits).toBe(3);
    const err = await new ControlPlaneClient({ url, retries: 1, nodeHttp: true })
      .listCredentials()
      .catch((e: unknown) => e);
    expect(isApiError(err, 'rate-limited')).toBe(true);
  });

  it('says in one line when the control plane cannot be reached or does not answer in time', async () => {
    const url = await listen(new Hono());
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
    const refused = await new ControlPlaneClient({ url, retries: 0, nodeHttp: true })
      .listWorkstations()
      .catch((e: unknown) => e);
    expect(isApiError(refused, 'unreachable')).toBe(true);
    expect((refused as Error).message).toMatch(new RegExp(`^cannot reach ${url}: ECONNREFUSED$`));

    const slow = await listen(new Hono().get('/api/workstations', () => new Promise<Response>(() => {})));
    const timedOut = await new ControlPlaneClient({ url: slow, retries: 0, timeoutMs: 200, nodeHttp: true })
      .listWorkstations()
      .catch((e: unknown) => e);
    expect(isApiError(timedOut, 'unreachable')).toBe(true);
    expect((timedOut as Error).message).toBe(`cannot reach ${slow}: timed out`);
  });
});
