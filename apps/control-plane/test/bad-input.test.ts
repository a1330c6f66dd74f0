import { connect, createServer, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { openPostgres } from '@runt/sql';
import { createTestDatabase, TEST_BACKENDS } from '@runt/sql/testing';
import { LINK_CLOSE_CODES } from '@runt/protocol';
import { startHarness, type Harness } from './harness.js';
import { pairAgent, uniqueRuntime, type AgentDouble } from './agent-double.js';

/** Issue 8, defect 7: bad input found by fuzzing answered 500 (or nothing); it is a 4xx. */
const clientError = (r: { status: number; json: any }) => {
  expect(r.status, JSON.stringify(r.json)).toBeGreaterThanOrEqual(400);
  expect(r.status, JSON.stringify(r.json)).toBeLessThan(500);
  expect(r.json).toMatchObject({ error: { code: expect.any(String), message: expect.any(String) } });
};

const deep = (levels: number): unknown => {
  let v: unknown = 'leaf';
  for (let i = 0; i < levels; i++) v = { n: v };
  return v;
};

describe.each(TEST_BACKENDS)('bad input is a 4xx on %s', (backend) => {
  let h: Harness;
  let agent: AgentDouble;
  let runtime: string;
  beforeAll(async () => {
    h = await startHarness(backend);
    runtime = uniqueRuntime();
    agent = await pairAgent(h, 'fuzzed-box', [runtime]);
    await agent.connect();
  });
  afterAll(async () => h?.close());

  async function claimed() {
    const submitted = await h.api('/api/runs', { token: h.adminToken, body: { runtime, command: ['true'] } });
    expect(submitted.status).toBe(201);
    const offer = await agent.waitFor('offer', (m) => m.run.id === submitted.json.run.id);
    const claim = await agent.client.claimRun(offer.run.id, { runner_id: 'r1', lease_ms: 30_000 });
    return { id: offer.run.id, token: claim.fencing_token };
  }

  it('%00 in a path id or a query', async () => {
    clientError(await h.api('/api/runs/%00', { token: h.adminToken }));
    clientError(await h.api('/api/runs/%00/events', { token: h.adminToken }));
    clientError(await h.api('/api/workstations/%00/drain', { token: h.adminToken, method: 'POST' }));
    clientError(await h.api('/api/workstations/pairing-codes/%00/status', { token: h.adminToken }));
    clientError(await h.api('/api/runs?status=%00', { token: h.adminToken }));
    clientError(await h.api('/api/runs?workstation_id=%00', { token: h.adminToken }));
    clientError(await h.api('/api/runs/%ED%A0%80', { token: h.adminToken }));
    clientError(await h.api('/api/bundles/%00', { token: h.adminToken }));
  });

  it('NUL or a lone surrogate in any JSON string', async () => {
    for (const bad of ['a\u0000b', 'a\ud800b', '\udfff']) {
      clientError(
        await h.api('/api/runs', { token: h.adminToken, body: { runtime, command: ['echo', bad] } }),
      );
      clientError(
        await h.api('/api/runs', {
          token: h.adminToken,
          body: { runtime, command: ['true'], idempotency_key: bad },
        }),
      );
      clientError(
        await h.api('/api/runs', {
          token: h.adminToken,
          body: { runtime, command: ['true'], env: { A: bad } },
        }),
      );
      const minted = await h.api('/api/workstations/pairing-codes', { token: h.adminToken, body: {} });
      clientError(
        await h.api('/api/workstations/pairing-codes/redeem', {
          body: { code: minted.json.pairing.code, display_name: bad },
        }),
      );
      clientError(
        await h.api('/api/workstations', {
          token: agent.token,
          body: {
            display_name: bad,
            cpu_count: 1,
            runtimes: [runtime],
            agent_version: '1',
            listening: false,
          },
        }),
      );
    }
    // Written as JSON escapes too (what a non-JS client would send).
    clientError(
      await h.api('/api/runs', {
        token: h.adminToken,
        raw: `{"runtime":"${runtime}","command":["a\\u0000"]}`,
      }),
    );
    clientError(
      await h.api('/api/runs', {
        token: h.adminToken,
        raw: `{"runtime":"${runtime}","command":["\\ud800"]}`,
      }),
    );
  });

  it('an event payload nested 5,000 levels deep', async () => {
    const { id, token } = await claimed();
    const deepText = `${'{"n":'.repeat(5000)}"leaf"${'}'.repeat(5000)}`;
    const r = await h.api(`/api/runs/${id}/events`, {
      token: agent.token,
      raw: `{"fencing_token":${token},"events":[{"seq":1,"type":"backend_status","payload":{"deep":${deepText}}}]}`,
    });
    clientError(r);
    // Deep but sane payloads still go through.
    const ok = await h.api(`/api/runs/${id}/events`, {
      token: agent.token,
      body: {
        fencing_token: token,
        events: [{ seq: 1, type: 'backend_status', payload: { deep: deep(20) } }],
      },
    });
    expect(ok.status).toBe(200);
  });

  it('exit_code of 2^31 or more, also with a stale fencing token', async () => {
    const { id, token } = await claimed();
    for (const fencing_token of [token, token - 1]) {
      clientError(
        await h.api(`/api/runs/${id}/status`, {
          token: agent.token,
          body: { fencing_token, status: 'failed', exit_code: 2 ** 31 },
        }),
      );
      clientError(
        await h.api(`/api/runs/${id}/status`, {
          token: agent.token,
          body: { fencing_token, status: 'failed', exit_code: 2 ** 53 - 1 },
        }),
      );
    }
    const done = await h.api(`/api/runs/${id}/status`, {
      token: agent.token,
      body: { fencing_token: token, status: 'failed', exit_code: 2 ** 31 - 1 },
    });
    expect(done.status).toBe(200);
  });

  it('a link register with NUL or a lone surrogate gets an answer: the link closes as invalid', async () => {
    for (const bad of ['x\u0000', 'x\ud800']) {
      const ws = new WebSocket(`${h.cp.url.replace(/^http/, 'ws')}/api/agent/link`, {
        headers: { authorization: `Bearer ${agent.token}` },
      });
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
      ws.send(
        JSON.stringify({
          type: 'register',
          workstation: {
            display_name: bad,
            cpu_count: 1,
            runtimes: [runtime],
            agent_version: '1',
            listening: true,
          },
          running_run_ids: [],
        }),
      );
      const answer = await Promise.race([
        closed,
        new Promise((r) => setTimeout(() => r('no answer'), 10_000)),
      ]);
      expect(answer).toBe(LINK_CLOSE_CODES.invalid);
    }
  });
});

/**
 * A fresh test database behind a TCP proxy the test steers: `up` pipes every connection to
 * Postgres; `refusing` drops new connections at once (a restarting server); `silent` accepts them
 * and never sends a byte (a host gone silent behind a load balancer, a hung server).
 * `dropAll` ends every connection open now, so the next request has to connect again.
 */
async function postgresBehindProxy() {
  const t = await createTestDatabase('postgres');
  const target = new URL(t.url as string);
  const sockets = new Set<Socket>();
  const state = { mode: 'up' as 'up' | 'refusing' | 'silent', acceptedSilently: 0 };
  const proxy = createServer((client) => {
    if (state.mode === 'refusing') return void client.destroy();
    sockets.add(client);
    client.on('error', () => {});
    if (state.mode === 'silent') return void state.acceptedSilently++;
    const server = connect(Number(target.port || 5432), target.hostname);
    sockets.add(server);
    client.pipe(server).pipe(client);
    const end = () => {
      client.destroy();
      server.destroy();
      sockets.delete(client);
      sockets.delete(server);
    };
    client.on('close', end);
    server.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const url = new URL(target);
  url.host = `127.0.0.1:${(proxy.address() as { port: number }).port}`;
  return {
    url: url.toString(),
    state,
    dropAll: () => {
      for (const s of sockets) s.destroy();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      proxy.close();
      await t.dispose();
    },
  };
}

describe('the database going away (a Postgres restart) is a 503 with Retry-After', () => {
  let pg: Awaited<ReturnType<typeof postgresBehindProxy>> | undefined;
  let h: Harness | undefined;

  afterAll(async () => {
    await h?.close().catch(() => {});
    await pg?.close();
  });

  it('answers 503 while the database is unreachable, and 2xx again once it is back', async () => {
    pg = await postgresBehindProxy();
    const db = await openPostgres({ url: pg.url });
    h = await startHarness('postgres', {}, {}, { backend: 'postgres', db, dispose: () => db.close() });
    expect((await h.api('/api/runs', { token: h.adminToken })).status).toBe(200);

    pg.state.mode = 'refusing';
    pg.dropAll();
    const down = await h.api('/api/runs', { token: h.adminToken });
    expect(down.status).toBe(503);
    expect(down.json.error.code).toBe('unavailable');
    expect(Number(down.headers.get('retry-after'))).toBeGreaterThan(0);

    pg.state.mode = 'up';
    let back = 0;
    for (let i = 0; i < 50 && back !== 200; i++)
      back = (await h.api('/api/runs', { token: h.adminToken })).status;
    expect(back).toBe(200);
  });
});

describe('a database host that accepts connections and never answers is a 503 within the connect timeout', () => {
  let pg: Awaited<ReturnType<typeof postgresBehindProxy>> | undefined;
  let h: Harness | undefined;

  afterAll(async () => {
    pg?.dropAll();
    await h?.close().catch(() => {});
    await pg?.close();
  });

  it('answers 503 {error:{code,message}} once the connect timeout passed, instead of hanging', async () => {
    pg = await postgresBehindProxy();
    const boundMs = 1_000;
    const db = await openPostgres({ url: pg.url, connectMs: boundMs });
    h = await startHarness('postgres', {}, {}, { backend: 'postgres', db, dispose: () => db.close() });
    expect((await h.api('/api/runs', { token: h.adminToken })).status).toBe(200);

    pg.state.mode = 'silent';
    pg.dropAll(); // every open connection gone: the next request connects
    await new Promise((r) => setTimeout(r, 200)); // the pool has dropped them
    const started = Date.now();
    const answer = await Promise.race([
      h.api('/api/runs', { token: h.adminToken }),
      new Promise<'hung'>((r) => setTimeout(() => r('hung'), 10_000)),
    ]);
    const tookMs = Date.now() - started;
    expect(answer === 'hung' ? answer : answer.status).toBe(503);
    const down = answer as Exclude<typeof answer, 'hung'>;
    expect(down.json.error).toMatchObject({ code: 'unavailable', message: expect.any(String) });
    expect(Number(down.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(pg.state.acceptedSilently).toBeGreaterThan(0); // it did wait on a silent connect
    expect(tookMs).toBeGreaterThanOrEqual(boundMs - 50);
    expect(tookMs).toBeLessThan(boundMs + 3_000); // the bound, plus a loaded machine's slack
    pg.state.mode = 'up';
  });
});
