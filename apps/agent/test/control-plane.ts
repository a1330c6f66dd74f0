import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import { loadConfig, startControlPlane, type RunningControlPlane } from '@runt/control-plane';
import { Agent, type AgentOptions } from '../src/agent.js';
import type { RunState } from '../src/run-state-store.js';
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
  const { admin, token, workstationId, ws } = await pairWorkstation(url, adminToken);
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
    workstationId,
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

/** A workstation paired through the real redeem endpoint: its token, id and client. */
export interface PairedWorkstation {
  admin: ControlPlaneClient;
  token: string;
  workstationId: string;
  /** The workstation's client (its token), over node:http keep-alive like the agent's. */
  ws: ControlPlaneClient;
}

/** Mints a pairing code with the admin token and redeems it as a workstation would. */
export async function pairWorkstation(
  url: string,
  adminToken: string,
  displayName = 'unit',
): Promise<PairedWorkstation> {
  const admin = new ControlPlaneClient({ url, token: adminToken });
  const { pairing } = await admin.mintPairingCode();
  const res = await fetch(`${url}/api/workstations/pairing-codes/redeem`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ code: pairing.code, display_name: displayName }),
  });
  const redeemed = (await res.json()) as { credential: { token: string }; workstation: { id: string } };
  const token = redeemed.credential.token;
  return {
    admin,
    token,
    workstationId: redeemed.workstation.id,
    ws: new ControlPlaneClient({ url, token, nodeHttp: true }),
  };
}

/**
 * A control plane on embedded PGlite in `dataDir` that a test can stop (as if killed) and start
 * again on the same data and port: an outage. Sweeps every 200 ms (a gap of more than 10 s
 * between sweeps is credited to live leases as an outage).
 */
export interface RestartableControlPlane {
  adminToken: string;
  /** The running control plane's URL (the same after a restart). */
  readonly url: string;
  /** The port of the first start (0 before it). */
  readonly port: number;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function restartableControlPlane(dataDir: string): RestartableControlPlane {
  const adminToken = mintToken('admin');
  let cp: RunningControlPlane | undefined;
  let port = 0;
  return {
    adminToken,
    get url() {
      if (!cp) throw new Error('the control plane is not running');
      return cp.url;
    },
    get port() {
      return port;
    },
    async start() {
      cp = await startControlPlane(
        loadConfig(
          {},
          {
            host: '127.0.0.1',
            port,
            adminToken,
            dataDir,
            logLevel: 'warn',
            schedulerTickMs: 50,
            offerTimeoutMs: 60_000,
            sweepIntervalMs: 200,
          },
        ),
        { logDestination: new Writable({ write: (_c, _e, cb) => cb() }) },
      );
      port = cp.port;
    },
    async stop() {
      const running = cp;
      cp = undefined;
      await running?.close();
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

/**
 * A fresh agent state dir (`<dir>/agent` made 0700, as the agent makes it), for tests that
 * write a predecessor's journal or runner list into it before an agent starts there.
 */
export function agentStateDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  mkdirSync(join(dir, 'agent'), { recursive: true, mode: 0o700 });
  return dir;
}

/**
 * The journal record of a run `claim`ed for `runnerId` that an agent saved (no output yet,
 * not ready, no command seen); `over` changes any field (an instance id, another token).
 *
 * @example
 * await store.save(journaledState(claim, dead, { instance_id: inst.id }));
 */
export function journaledState(
  claim: ClaimRunResponse,
  runnerId: string,
  over: Partial<RunState> = {},
): RunState {
  return {
    run_id: claim.run.id,
    runtime: 'fake',
    runner_id: runnerId,
    fencing_token: claim.fencing_token,
    next_seq: claim.next_event_seq,
    log_chars: { stdout: 0, stderr: 0 },
    ready: false,
    command_seq: 0,
    ...over,
  };
}
