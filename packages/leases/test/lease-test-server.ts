import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { migrate } from '@runt/sql';
import { createTestDatabase, type TestDatabase } from '@runt/sql/testing';
import { Hono } from 'hono';
import { isLeaseError } from '../src/errors.js';
import { createSqlLeaseStore, type LeaseStore } from '../src/lease-store.js';
import { leaseMigrations } from '../src/migrations.js';
import { claimRequestSchema, heartbeatRequestSchema, releaseRequestSchema } from '../src/wire-schemas.js';

export const TEST_TOKEN = 'rnt_ws_test-token';

type Endpoint = 'claim' | 'heartbeat' | 'release';

/** A canned answer the server gives instead of doing the real thing. */
export interface CannedAnswer {
  status: number;
  retryAfter?: string;
}

export interface LeaseTestServer {
  url: string;
  store: LeaseStore;
  t: TestDatabase;
  /** Every request the server received, with its local arrival time (performance.now()). */
  calls: Array<{ endpoint: Endpoint; runId: string; at: number; status: number; auth: string | undefined }>;
  /** Queued canned answers per endpoint, consumed one per request before the real handler. */
  canned: Record<Endpoint, CannedAnswer[]>;
  /** Extra fields merged into every real claim / heartbeat answer (as runt's control plane adds its own). */
  extra: { claim: Record<string, unknown>; heartbeat: Record<string, unknown> };
  close(): Promise<void>;
}

/**
 * A real listening control-plane stand-in: Hono on @hono/node-server (port 0) serving the three
 * lease endpoints over the SQL lease store on in-memory PGlite, with bearer auth.
 */
export async function startLeaseTestServer(): Promise<LeaseTestServer> {
  const t = await createTestDatabase('pglite');
  await migrate(t.db, leaseMigrations);
  const store = createSqlLeaseStore(t.db);
  const calls: LeaseTestServer['calls'] = [];
  const canned: LeaseTestServer['canned'] = { claim: [], heartbeat: [], release: [] };
  const extra: LeaseTestServer['extra'] = { claim: {}, heartbeat: {} };
  const app = new Hono();

  const conflict = (message: string) => ({ error: { code: 'runner-lease-conflict', message } });

  app.post('/api/runs/:id/:endpoint{claim|heartbeat|release}', async (c) => {
    const endpoint = c.req.param('endpoint') as Endpoint;
    const runId = c.req.param('id');
    const auth = c.req.header('authorization');
    const log = (status: number) => calls.push({ endpoint, runId, at: performance.now(), status, auth });
    if (auth !== `Bearer ${TEST_TOKEN}`) {
      log(401);
      return c.json({ error: { code: 'unauthorized', message: 'unknown token' } }, 401);
    }
    const next = canned[endpoint].shift();
    if (next) {
      log(next.status);
      if (next.retryAfter !== undefined) c.header('Retry-After', next.retryAfter);
      return c.json({ error: { code: 'canned', message: `canned ${next.status}` } }, next.status as 429);
    }
    const json = await c.req.json();
    try {
      if (endpoint === 'claim') {
        const body = claimRequestSchema.parse(json);
        const g = await store.claim(runId, body.runner_id, body.lease_ms);
        log(200);
        return c.json({
          fencing_token: g.fencingToken,
          expires_at: g.expiresAt.toISOString(),
          run: { id: runId, status: 'accepted' },
          ...extra.claim,
        });
      }
      if (endpoint === 'heartbeat') {
        const body = heartbeatRequestSchema.parse(json);
        const g = await store.renew(runId, body.runner_id ?? '', body.fencing_token, body.lease_ms);
        log(200);
        return c.json({ expires_at: g.expiresAt.toISOString(), ...extra.heartbeat });
      }
      const body = releaseRequestSchema.parse(json);
      const released = await store.release(runId, body.runner_id ?? '', body.fencing_token);
      if (!released) {
        log(409);
        return c.json(conflict(`${runId} is not held with fencing token ${body.fencing_token}`), 409);
      }
      log(200);
      return c.json({ released: true });
    } catch (e) {
      if (isLeaseError(e, 'runner-lease-conflict')) {
        log(409);
        return c.json(conflict(e.message), 409);
      }
      log(500);
      return c.json({ error: { code: 'internal', message: String(e) } }, 500);
    }
  });

  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    store,
    t,
    calls,
    canned,
    extra,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await t.dispose();
    },
  };
}
