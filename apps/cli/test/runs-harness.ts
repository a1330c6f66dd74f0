import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { execa, type ResultPromise } from 'execa';
import { expect } from 'vitest';
import {
  loadConfig,
  startControlPlane,
  type ControlPlaneConfig,
  type RunningControlPlane,
} from '@runt/control-plane';
import { ControlPlaneClient, isTerminalRunStatus, type Run, type RunEvent } from '@runt/protocol';
import { eventually as poll } from '@runt/protocol/testing';
import { createTestDatabase, type TestDatabase } from '@runt/sql/testing';
import { mintToken } from '@runt/transport-auth';
import { RUNT_BIN, runt } from './cli.js';

export interface TestAgent {
  name: string;
  configDir: string;
  workstationId: string;
  token: string;
  /** The `runt workstation run` process. */
  cli: ResultPromise;
  /** Pid of the runt-agent child it started. */
  agentPid: number;
  output: () => string;
}

export interface RunsHarness {
  cp: RunningControlPlane;
  t: TestDatabase;
  admin: ControlPlaneClient;
  adminEnv: Record<string, string>;
  agents: TestAgent[];
  root: string;
  startAgent(name: string, args: string[]): Promise<TestAgent>;
  pair(name: string): Promise<{ configDir: string; workstationId: string; token: string }>;
  close(): Promise<void>;
}

/** Where the docker engine is: DOCKER_HOST, else the private engine of scripts/setup-engines.sh. */
export const DOCKER_HOST =
  process.env.DOCKER_HOST ||
  (existsSync('/run/runt-docker/docker.sock') ? 'unix:///run/runt-docker/docker.sock' : '');

/**
 * A real listening control plane on a fresh database of `backend` with short sweep, offer and
 * ping intervals (so lost runners are noticed in about a second), plus helpers to pair
 * workstations with the CLI and start `runt workstation run` for them.
 */
export async function startRunsHarness(
  backend: 'pglite' | 'postgres',
  config: Partial<ControlPlaneConfig> = {},
): Promise<RunsHarness> {
  const t = await createTestDatabase(backend);
  const adminToken = mintToken('admin');
  const root = mkdtempSync(join(tmpdir(), 'runt-runs-'));
  const logs: string[] = [];
  const sink = new Writable({ write: (c, _e, cb) => (logs.push(String(c)), cb()) });
  const cp = await startControlPlane(
    loadConfig(
      {},
      {
        host: '127.0.0.1',
        port: 0,
        adminToken,
        dataDir: join(root, 'cp'),
        logLevel: 'warn',
        sweepIntervalMs: 200,
        schedulerTickMs: 200,
        offerTimeoutMs: 3_000,
        linkPingMs: 1_000,
        ...config,
      },
    ),
    { db: t.db, logDestination: sink },
  );
  const admin = new ControlPlaneClient({ url: cp.url, token: adminToken });
  const adminEnv = { RUNT_ADMIN_TOKEN: adminToken, RUNT_CLOUD_URL: cp.url };
  const agents: TestAgent[] = [];

  const pair = async (name: string) => {
    const code = await runt(['admin', 'pairing-code', '--json'], adminEnv);
    expect(code.exitCode, code.stderr).toBe(0);
    const configDir = join(root, name, 'config');
    const r = await runt(
      ['workstation', 'connect', cp.url, '--code', JSON.parse(code.stdout).pairing.code, '--name', name],
      { RUNT_CONFIG_DIR: configDir },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const cred = JSON.parse(readFileSync(join(configDir, 'workstation.json'), 'utf8'));
    return { configDir, workstationId: cred.workstation_id as string, token: cred.token as string };
  };

  const startAgent = async (name: string, args: string[]): Promise<TestAgent> => {
    const { configDir, workstationId, token } = await pair(name);
    let out = '';
    const cli = execa('node', [RUNT_BIN, 'workstation', 'run', ...args], {
      env: {
        ...process.env,
        RUNT_CLOUD_URL: undefined,
        RUNT_CLOUD_TOKEN: undefined,
        RUNT_ADMIN_TOKEN: undefined,
        RUNT_STATE_DIR: undefined,
        RUNT_CONFIG_DIR: configDir,
        DOCKER_HOST,
        RUNT_LOG_LEVEL: 'info',
      },
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
      all: true,
    });
    cli.all?.on('data', (d: Buffer) => (out += String(d)));
    const ws = await eventually(async () => {
      const { workstations } = await admin.listWorkstations();
      const w = workstations.find((x) => x.id === workstationId);
      return w?.listening && w.status === 'online' && w.runtimes.length > 0 ? w : undefined;
    }, `agent ${name} registered (cli exit: ${cli.exitCode}, output: ${out})`);
    expect(ws.listening).toBe(true);
    const children = readFileSync(`/proc/${cli.pid}/task/${cli.pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
    expect(children).toHaveLength(1);
    const agent: TestAgent = {
      name,
      configDir,
      workstationId,
      token,
      cli,
      agentPid: children[0]!,
      output: () => out,
    };
    agents.push(agent);
    return agent;
  };

  return {
    cp,
    t,
    admin,
    adminEnv,
    agents,
    root,
    startAgent,
    pair,
    async close() {
      for (const a of agents) {
        try {
          process.kill(a.agentPid, 'SIGCONT');
        } catch {
          // already gone
        }
        a.cli.kill('SIGTERM');
      }
      await Promise.all(agents.map((a) => a.cli));
      await cp.close();
      await t.dispose();
    },
  };
}

/** Polls `probe` until it returns something truthy (`@runt/protocol/testing`; here 60 s, every 100 ms). */
export function eventually<T>(
  probe: () => Promise<T | undefined | false>,
  what: string,
  timeoutMs = 60_000,
): Promise<T> {
  return poll(probe, what, timeoutMs, 100) as Promise<T>;
}

/** Waits until the run is terminal and returns it. */
export function terminal(admin: ControlPlaneClient, id: string, timeoutMs = 60_000): Promise<Run> {
  return eventually(
    async () => {
      const { run } = await admin.getRun(id);
      return isTerminalRunStatus(run.status) ? run : undefined;
    },
    `run ${id} to finish`,
    timeoutMs,
  );
}

/** Every event of a run. */
export async function allEvents(admin: ControlPlaneClient, id: string): Promise<RunEvent[]> {
  const out: RunEvent[] = [];
  for (let after = 0; ;) {
    const page = await admin.listEvents(id, { after_seq: after });
    out.push(...page.events);
    if (page.events.length === 0) return out;
    after = page.next_after_seq;
  }
}

/** The stdout a run's workload wrote (command output excluded). */
export async function stdoutOf(admin: ControlPlaneClient, id: string): Promise<string> {
  return (await allEvents(admin, id))
    .filter((e) => e.type === 'log' && e.payload.stream === 'stdout' && e.payload.command_id === undefined)
    .map((e) => e.payload.data)
    .join('');
}

/** True while `pid` is a live process (a zombie counts as gone). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
