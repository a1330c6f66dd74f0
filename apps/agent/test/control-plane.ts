import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import { loadConfig, startControlPlane, type RunningControlPlane } from '@runt/control-plane';
import { Agent, type AgentOptions } from '../src/agent.js';
import { ControlPlaneClient, type ClaimRunResponse, type Run, type SubmitRunRequest } from '@runt/protocol';
import { eventually } from '@runt/protocol/testing';
import type { SqlBackend } from '@runt/sql';
import { createTestDatabase, type TestDatabase } from '@runt/sql/testing';
import { mintToken } from '@runt/transport-auth';

/** A real listening control plane on in-memory PGlite, with one paired workstation. */
export interface TestControlPlane {
  cp: RunningControlPlane;
  url: string;
  admin: ControlPlaneClient;
  /** The paired workstation's client (its token), over node:http keep-alive like the agent's. */
  ws: ControlPlaneClient;
  workstationId: string;
  token: string;
  /** Submits a run for `runtime`, waits until it is offered to the workstation and claims it. */
  claimRun(body: SubmitRunRequest, runnerId?: string): Promise<ClaimRunResponse>;
  /** Registers the workstation as listening for `runtimes` (over HTTP: the polling path). */
  register(runtimes: string[]): Promise<void>;
  close(): Promise<void>;
}

/** A real listening control plane on in-memory PGlite (default) or a fresh Postgres database. */
export async function startTestControlPlane(backend: SqlBackend = 'pglite'): Promise<TestControlPlane> {
  const t: TestDatabase = await createTestDatabase(backend);
  const adminToken = mintToken('admin');
  const cp = await startControlPlane(
    loadConfig(
      {},
      {
        host: '127.0.0.1',
        port: 0,
        adminToken,
        dataDir: mkdtempSync(join(tmpdir(), 'runt-agent-cp-')),
        logLevel: 'warn',
        schedulerTickMs: 50,
        offerTimeoutMs: 60_000,
      },
    ),
    { db: t.db, logDestination: new Writable({ write: (_c, _e, cb) => cb() }) },
  );
  const url = cp.url;
  const admin = new ControlPlaneClient({ url, token: adminToken });
  const minted = await admin.mintPairingCode();
  const res = await fetch(`${url}/api/workstations/pairing-codes/redeem`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ code: minted.pairing.code, display_name: 'unit' }),
  });
  const redeemed = (await res.json()) as { credential: { token: string }; workstation: { id: string } };
  const token = redeemed.credential.token;
  const ws = new ControlPlaneClient({ url, token, nodeHttp: true });
  const register = async (runtimes: string[]) => {
    await ws.registerWorkstation({
      display_name: 'unit',
      cpu_count: 2,
      runtimes,
      agent_version: '0.0.0-test',
      listening: true,
      max_runs: 10,
    });
  };
  return {
    cp,
    url,
    admin,
    ws,
    workstationId: redeemed.workstation.id,
    token,
    register,
    async claimRun(body, runnerId = 'unit-runner') {
      await register([body.runtime]);
      const { run } = await admin.submitRun(body);
      await eventually(
        async () => (await admin.getRun(run.id)).run.status === 'offered',
        `${run.id} offered`,
      );
      return ws.claimRun(run.id, { runner_id: runnerId, lease_ms: 30_000 });
    },
    async close() {
      await cp.close();
      await t.dispose();
    },
  };
}

/** Polls until truthy: the one helper in `@runt/protocol/testing` (15 s bound, every 20 ms). */
export { eventually };

/** A logger that keeps its lines (for asserting on warnings) and writes nothing. */
export function testLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino(
    { level: 'debug' },
    new Writable({ write: (c, _e, cb) => (lines.push(JSON.parse(String(c))), cb()) }),
  );
  return { logger, lines };
}

/**
 * An in-process agent as the tests use it: the fake runtime, no signal handlers (the test
 * process's SIGTERM is vitest's), a silent logger unless one is given. Everything else is
 * the caller's (url, token, stateDir, slots, lease, registry, …).
 */
export function testAgent(
  opts: Omit<AgentOptions, 'runtimes'> & Partial<Pick<AgentOptions, 'runtimes'>>,
): Agent {
  return new Agent({ runtimes: ['fake'], shutdownSignals: [], logger: testLogger().logger, ...opts });
}

export type { Run };
