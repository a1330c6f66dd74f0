import { Writable } from 'node:stream';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '@runt/sql/testing';
import type { Queryable, SqlBackend } from '@runt/sql';
import { hashToken, mintToken } from '@runt/transport-auth';
import { controlMessageSchema, type ControlMessage } from '@runt/protocol';
import { eventually } from '@runt/protocol/testing';
import { WebSocket } from 'ws';
import { loadConfig, type ControlPlaneConfig } from '../src/config.js';
import { startControlPlane, type RunningControlPlane, type StartOptions } from '../src/server.js';

export interface Harness {
  cp: RunningControlPlane;
  t: TestDatabase;
  adminToken: string;
  dataDir: string;
  /** Every JSON log line the control plane wrote. */
  logs: string[];
  /** fetch against the control plane with JSON helpers. */
  api(
    path: string,
    init?: {
      method?: string;
      token?: string;
      body?: unknown;
      raw?: string;
      headers?: Record<string, string>;
    },
  ): Promise<{ status: number; headers: Headers; json: any }>;
  close(): Promise<void>;
}

/** A real listening control plane on port 0 over a fresh database of the given backend. */
export async function startHarness(
  backend: SqlBackend,
  opts: Omit<StartOptions, 'db' | 'logDestination'> = {},
  config: Partial<ControlPlaneConfig> = {},
  /** A database opened by the test (e.g. through a proxy it can cut); the harness disposes it. */
  given?: TestDatabase,
): Promise<Harness> {
  const t = given ?? (await createTestDatabase(backend));
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  const adminToken = mintToken('admin');
  const dataDir = mkdtempSync(join(tmpdir(), 'runt-cp-'));
  const cp = await startControlPlane(
    loadConfig(
      {},
      {
        port: 0,
        host: '127.0.0.1',
        dataDir,
        adminToken,
        bodyLimitBytes: 64 * 1024,
        logLevel: 'info',
        ...config,
      },
    ),
    {
      ...opts,
      db: t.db,
      logDestination: sink as unknown as NonNullable<StartOptions['logDestination']>,
    },
  );
  return {
    cp,
    t,
    adminToken,
    dataDir,
    logs,
    async api(path, init = {}) {
      const headers: Record<string, string> = { ...init.headers };
      if (init.token) headers.authorization = `Bearer ${init.token}`;
      let body: string | undefined;
      if (init.raw !== undefined) body = init.raw;
      else if (init.body !== undefined) body = JSON.stringify(init.body);
      if (body !== undefined) headers['content-type'] ??= 'application/json';
      const res = await fetch(`${cp.url}${path}`, {
        method: init.method ?? (body === undefined ? 'GET' : 'POST'),
        headers,
        ...(body === undefined ? {} : { body }),
      });
      const text = await res.text();
      let json: unknown;
      try {
        json = text ? JSON.parse(text) : undefined;
      } catch {
        json = text;
      }
      return { status: res.status, headers: res.headers, json };
    },
    async close() {
      await cp.close();
      await t.dispose();
    },
  };
}

/**
 * A fleet of `n` workstations `${prefix}_0` … (display name `name`), each with a live
 * workstation credential (`cred_<id>`), written in two statements; their ids and tokens, in order.
 *
 * @example
 * const { tokens } = await seedFleet(h.t.db, 300, 'ws_bound', 'bound');
 */
export async function seedFleet(
  db: Queryable,
  n: number,
  prefix: string,
  name: string,
): Promise<{ ids: string[]; tokens: string[] }> {
  const ids = Array.from({ length: n }, (_, i) => `${prefix}_${i}`);
  const tokens = ids.map(() => mintToken('workstation'));
  await db.query(
    `insert into workstations (id, display_name) select id, $2::text from unnest($1::text[]) as t(id)`,
    [ids, name],
  );
  await db.query(
    `insert into credentials (id, kind, token_hash, workstation_id)
       select 'cred_' || w, 'workstation', th, w from unnest($1::text[], $2::text[]) as t(w, th)`,
    [ids, tokens.map(hashToken)],
  );
  return { ids, tokens };
}

/** A raw agent link opened by {@link openTestLink}, and every control message it got so far. */
export interface TestLink {
  ws: WebSocket;
  got: ControlMessage[];
  /** Every message as it came, unparsed (`got` holds them as the schema makes them). */
  raw: string[];
}

/**
 * A raw agent link to `h` as the workstation of `token`: a WebSocket on `/api/agent/link` with
 * the bearer, each control message parsed into `got`, and a `register` sent for `display_name`
 * (cpu_count 4, max_runs 4, `runtimes`, listening) with `claimOnOffer` when given. Resolves once
 * `registered` came (the socket closed if it never does).
 *
 * @example
 * const { ws, got } = await openTestLink(h, agent.token, 'claimer', [runtime], { runner_id: 'r1', lease_ms: 30_000 });
 */
export async function openTestLink(
  h: Pick<Harness, 'cp'>,
  token: string,
  display_name: string,
  runtimes: string[],
  claimOnOffer?: { runner_id: string; lease_ms: number },
): Promise<TestLink> {
  const ws = new WebSocket(`${h.cp.url.replace(/^http/, 'ws')}/api/agent/link`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const got: ControlMessage[] = [];
  const raw: string[] = [];
  ws.on('message', (d) => {
    raw.push((d as Buffer).toString('utf8'));
    got.push(controlMessageSchema.parse(JSON.parse(raw[raw.length - 1]!)));
  });
  await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
  ws.send(
    JSON.stringify({
      type: 'register',
      workstation: {
        display_name,
        cpu_count: 4,
        max_runs: 4,
        runtimes,
        agent_version: '0.0.0-test',
        listening: true,
      },
      running_run_ids: [],
      ...(claimOnOffer && { claim_on_offer: claimOnOffer }),
    }),
  );
  try {
    await eventually(() => got.some((m) => m.type === 'registered'), 'registered');
  } catch (e) {
    ws.close();
    throw e;
  }
  return { ws, got, raw };
}
