import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlaneClient, isTerminalRunStatus, type Run } from '@runt/protocol';
import { createTestDatabase, type TestDatabase } from '@runt/sql/testing';
import { mintToken } from '@runt/transport-auth';
import { AGENT_BIN, eventually, freePort, writeHaproxyConfig } from './engine.js';

// Three `runt-control-plane` processes on one real Postgres behind the real HAProxy of
// deploy/haproxy.cfg, and six real agents (`runt-agent --runtime fake`; `runt workstation run` takes one URL): four given the
// replicas' URLs directly (each list starting at a different replica, so links are spread), two
// the load balancer's. Runs are submitted round-robin to every replica and through HAProxy; a
// cancel goes to a replica that does not hold the link; one replica is SIGKILLed under load.

const CP_BIN = fileURLToPath(new URL('../../apps/control-plane/dist/bin.js', import.meta.url));
const adminToken = mintToken('admin');
const children: ResultPromise[] = [];
let t: TestDatabase;
const replicas: Array<{ id: string; url: string; proc: ResultPromise; client: ControlPlaneClient }> = [];
let lbUrl: string;
let viaLb: ControlPlaneClient;
const agents: Array<{ workstationId: string; proc: ResultPromise }> = [];

function startReplica(id: string, port: number): ResultPromise {
  const proc = execa('node', [CP_BIN], {
    env: {
      ...process.env,
      DATABASE_URL: t.url!,
      RUNT_ADMIN_TOKEN: adminToken,
      RUNT_HOST: '127.0.0.1',
      RUNT_PORT: String(port),
      RUNT_DATA_DIR: mkdtempSync(join(tmpdir(), `runt-${id}-`)),
      RUNT_REPLICA_ID: id,
      RUNT_LOG_LEVEL: 'warn',
      RUNT_SWEEP_INTERVAL_MS: '500',
    },
    reject: false,
    stdin: 'ignore',
    all: true,
  });
  children.push(proc);
  return proc;
}

async function startAgent(i: number, cloudUrl: string): Promise<void> {
  const admin = replicas[i % 3]!.client;
  const { pairing } = await admin.mintPairingCode();
  const res = await fetch(`${replicas[i % 3]!.url}/api/workstations/pairing-codes/redeem`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ code: pairing.code, display_name: `replica-agent-${i}` }),
  });
  const r = (await res.json()) as { workstation: { id: string }; credential: { token: string } };
  const root = mkdtempSync(join(tmpdir(), `runt-replica-agent-${i}-`));
  const proc = execa(
    'node',
    [
      AGENT_BIN,
      '--runtime',
      'fake',
      '--max-runs',
      '4',
      '--state-dir',
      join(root, 'state'),
      '--shutdown-grace-ms',
      '0',
    ],
    {
      env: {
        ...process.env,
        XDG_CONFIG_HOME: join(root, 'config'),
        RUNT_CLOUD_URL: cloudUrl,
        RUNT_CLOUD_TOKEN: r.credential.token,
        RUNT_WORKSTATION_ID: r.workstation.id,
        RUNT_ADMIN_TOKEN: undefined,
        RUNT_LOG_LEVEL: 'warn',
      },
      reject: false,
      stdin: 'ignore',
      all: true,
    },
  );
  children.push(proc);
  agents.push({ workstationId: r.workstation.id, proc });
}

/** workstation id → the replica holding its link (as the replicas record it in Postgres). */
async function linkHolders(): Promise<Map<string, string>> {
  const r = await t.db.query<{ id: string; link_replica: string }>(
    `select id, link_replica from workstations where link_state = 'connected' and listening and link_replica is not null`,
  );
  return new Map(r.rows.map((w) => [w.id, w.link_replica]));
}

async function finished(ids: string[], what: string, timeoutMs = 120_000): Promise<Run[]> {
  return eventually(
    async () => {
      const runs = await Promise.all(ids.map(async (id) => (await viaLb.getRun(id)).run));
      return runs.every((r) => isTerminalRunStatus(r.status)) ? runs : undefined;
    },
    what,
    timeoutMs,
  );
}

async function stdoutOf(id: string): Promise<string> {
  const { events } = await viaLb.listEvents(id);
  return events
    .filter((e) => e.type === 'log' && e.payload.stream === 'stdout')
    .map((e) => e.payload.data)
    .join('');
}

/** Completed on its first attempt, and its command ran exactly once. */
async function expectOnce(run: Run, marker: string): Promise<void> {
  expect(run).toMatchObject({ status: 'completed', attempt: 1 });
  expect((await stdoutOf(run.id)).split('\n').filter((l) => l === marker)).toHaveLength(1);
}

describe('three control-plane replicas on postgres behind haproxy, real agents', () => {
  beforeAll(async () => {
    t = await createTestDatabase('postgres');
    const ports = [await freePort(), await freePort(), await freePort()];
    for (const [i, port] of ports.entries()) {
      const id = `cp${i + 1}`;
      const url = `http://127.0.0.1:${port}`;
      replicas.push({
        id,
        url,
        proc: startReplica(id, port),
        client: new ControlPlaneClient({ url, token: adminToken, retries: 0 }),
      });
    }
    // The image test builds and runs containers in parallel with this file: on 2 loaded cores a
    // replica's start (imports, migrations behind the other replicas' advisory lock) took over
    // the default 15 s once (clean-clone CI, 2026-12-01 16:22). A replica that exited is
    // reported with its exit and output.
    for (const r of replicas)
      await eventually(
        async () => {
          if (r.proc.exitCode !== null || r.proc.signalCode !== null) {
            const out = await r.proc;
            throw new Error(
              `${r.id} exited (${out.exitCode ?? out.signal}): ${String(out.all).slice(-2000)}`,
            );
          }
          return (await fetch(`${r.url}/readyz`)).ok;
        },
        `${r.id} ready`,
        120_000,
      );
    const lbPort = await freePort();
    children.push(
      execa('haproxy', ['-db', '-f', writeHaproxyConfig(lbPort, ports)], {
        reject: false,
        stdin: 'ignore',
        all: true,
      }),
    );
    lbUrl = `http://127.0.0.1:${lbPort}`;
    viaLb = new ControlPlaneClient({ url: lbUrl, token: adminToken });
    await eventually(async () => (await fetch(`${lbUrl}/readyz`)).ok, 'haproxy ready');
    const urls = replicas.map((r) => r.url);
    for (let i = 0; i < 4; i++)
      await startAgent(i, [...urls.slice(i % 3), ...urls.slice(0, i % 3)].join(','));
    for (let i = 4; i < 6; i++) await startAgent(i, lbUrl);
    await eventually(async () => (await linkHolders()).size === agents.length, 'every agent linked');
  });

  afterAll(async () => {
    for (const c of children.reverse()) c.kill('SIGKILL');
    await Promise.allSettled(children);
    await t?.dispose();
  });

  it('spreads the links over the replicas', async () => {
    expect(new Set((await linkHolders()).values()).size).toBe(3);
  });

  it('completes runs submitted round-robin to every replica and through the load balancer, each exactly once', async () => {
    const clients = [...replicas.map((r) => r.client), viaLb];
    const runs: Array<{ run: Run; marker: string }> = [];
    // Each run holds its slot for 3 s, so the first 24 fill all 6 agents × 4 slots (and so the
    // agents of every replica) while the rest wait: a run that ended at once would free the
    // lowest-id workstation again before the next submit, and every run would land on it.
    for (let i = 0; i < 40; i++) {
      const marker = `rr-${i}`;
      const { run } = await clients[i % clients.length]!.submitRun({
        runtime: 'fake',
        command: ['sh', '-c', `sleep 3; echo ${marker}`],
      });
      runs.push({ run, marker });
    }
    const done = await finished(
      runs.map((r) => r.run.id),
      'the round-robin runs',
    );
    for (const [i, run] of done.entries()) await expectOnce(run, runs[i]!.marker);
    // They ran on agents linked to every replica.
    const holders = await linkHolders();
    expect(new Set(done.map((r) => holders.get(r.workstation_id!))).size).toBe(3);
  });

  it('delivers a cancel sent to a replica that does not hold the link', async () => {
    const holders = await linkHolders();
    const [workstationId, holder] = [...holders].find(([, replica]) => replica === 'cp2')!;
    const { run } = await replicas[0]!.client.submitRun({
      runtime: 'fake',
      command: ['sh', '-c', 'sleep 60'],
      placement: { workstation_id: workstationId },
    });
    await eventually(
      async () => (await viaLb.getRun(run.id)).run.status === 'running',
      'the long run running',
    );
    expect(holder).toBe('cp2');
    await replicas[2]!.client.cancelRun(run.id);
    const [ended] = await finished([run.id], 'the cancelled run', 30_000);
    expect(ended!.status).toBe('cancelled');
  });

  it('loses no run when a replica is SIGKILLed under load: its agents re-link elsewhere within 5 s and every run completes once', async () => {
    const victim = replicas[1]!;
    const before = await linkHolders();
    const orphans = [...before].filter(([, r]) => r === victim.id).map(([w]) => w);
    expect(orphans.length).toBeGreaterThan(0);
    const survivors = [replicas[0]!.client, replicas[2]!.client];
    const runs: Array<{ run: Run; marker: string }> = [];
    const submit = async (i: number, seconds: number) => {
      const marker = `kill-${i}`;
      const { run } = await survivors[i % 2]!.submitRun({
        runtime: 'fake',
        command: ['sh', '-c', `sleep ${seconds}; echo ${marker}`],
      });
      runs.push({ run, marker });
    };
    const inFlightOnOrphan = async () => {
      const states = await Promise.all(runs.map(async (r) => (await viaLb.getRun(r.run.id)).run));
      return states.some((r) => r.status === 'running' && orphans.includes(r.workstation_id!));
    };
    // Looked for while submitting: on a loaded machine the 30 sequential submits can outlast the
    // runs the victim's agents got early, so a look only after the last one may find them done.
    let inFlight = false;
    for (let i = 0; i < 30; i++) {
      await submit(i, 1);
      if (!inFlight && i % 3 === 2) inFlight = await inFlightOnOrphan();
    }
    if (!inFlight)
      await eventually(inFlightOnOrphan, 'a run in flight on an agent of the replica to kill', 30_000);
    const killedAt = Date.now();
    victim.proc.kill('SIGKILL');
    for (let i = 30; i < 60; i++) await submit(i, 0.3);
    const relinked = await eventually(
      async () => {
        const now = await linkHolders();
        return orphans.every((w) => now.has(w) && now.get(w) !== victim.id)
          ? Date.now() - killedAt
          : undefined;
      },
      "the killed replica's agents re-linked",
      30_000,
    );
    console.log(`agents of the killed replica re-linked after ${relinked} ms`);
    expect(relinked).toBeLessThanOrEqual(5000);
    const done = await finished(
      runs.map((r) => r.run.id),
      'the runs submitted around the kill',
    );
    for (const [i, run] of done.entries()) await expectOnce(run, runs[i]!.marker);
  });
});
