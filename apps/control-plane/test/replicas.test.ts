import { Writable } from 'node:stream';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlaneClient, type Run } from '@runt/protocol';
import { createTestDatabase } from '@runt/sql/testing';
import { loadConfig, type ControlPlaneConfig } from '../src/config.js';
import { startControlPlane, type RunningControlPlane, type StartOptions } from '../src/server.js';
import { openTestLink, startHarness, type Harness } from './harness.js';
import { eventually, pairAgent, uniqueRuntime, type AgentDouble } from './agent-double.js';

// Three replicas on one Postgres. The scheduler tick is one minute, so anything that reaches an
// agent within the test's bounds got there through the replicas' signals, not a periodic pass.
const QUIET: Partial<ControlPlaneConfig> = { schedulerTickMs: 60_000, sweepIntervalMs: 60_000 };

/** The harness's view of another replica: same database and admin token, its own URL. */
function replicaHarness(a: Harness, cp: RunningControlPlane): Harness {
  return {
    ...a,
    cp,
    async api(path, init = {}) {
      const headers: Record<string, string> = { ...init.headers };
      if (init.token) headers.authorization = `Bearer ${init.token}`;
      const body = init.raw ?? (init.body === undefined ? undefined : JSON.stringify(init.body));
      if (body !== undefined) headers['content-type'] ??= 'application/json';
      const res = await fetch(`${cp.url}${path}`, {
        method: init.method ?? (body === undefined ? 'GET' : 'POST'),
        headers,
        ...(body === undefined ? {} : { body }),
      });
      const text = await res.text();
      return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : undefined };
    },
  };
}

describe('three control-plane replicas on one postgres', () => {
  let a: Harness;
  const others: RunningControlPlane[] = [];
  let replicas: Harness[];
  let admins: ControlPlaneClient[];
  beforeAll(async () => {
    a = await startHarness(
      'postgres',
      {
        pairingLimits: {
          perAddress: { max: 100, windowMs: 60_000 },
          overall: { max: 1000, windowMs: 60_000 },
        },
      },
      QUIET,
    );
    const silent = new Writable({ write: (_c, _e, cb) => cb() });
    for (const name of ['b', 'c']) {
      others.push(
        await startControlPlane(
          loadConfig(
            {},
            {
              port: 0,
              host: '127.0.0.1',
              dataDir: mkdtempSync(join(tmpdir(), `runt-cp-${name}-`)),
              adminToken: a.adminToken,
              databaseUrl: a.t.url!,
              logLevel: 'info',
              ...QUIET,
            },
          ),
          { logDestination: silent as unknown as NonNullable<StartOptions['logDestination']> },
        ),
      );
    }
    replicas = [a, ...others.map((cp) => replicaHarness(a, cp))];
    admins = replicas.map((r) => new ControlPlaneClient({ url: r.cp.url, token: a.adminToken, retries: 0 }));
    // Every replica listens before the test relies on its notifications.
    await eventually(
      () => [a.cp, ...others].every((cp) => cp.principals.stats().enabled),
      'every replica listening',
    );
  });
  afterAll(async () => {
    for (const cp of others) await cp.close();
    await a?.close();
  });

  /** One agent per replica, linked to that replica. */
  async function agentsOnEachReplica(runtime: string): Promise<AgentDouble[]> {
    const agents: AgentDouble[] = [];
    for (const [i, r] of replicas.entries()) {
      const agent = await pairAgent(r, `replica-${i}-box`, [runtime]);
      await agent.connect({ cpu_count: 8, max_runs: 8 });
      agents.push(agent);
    }
    return agents;
  }
  const offersOf = (agent: AgentDouble, runId: string) =>
    agent.messages.filter((m) => m.type === 'offer' && m.id === runId).length;

  it('offers a run submitted on one replica to an agent linked to another, and each run completes once', async () => {
    const runtime = uniqueRuntime();
    const agents = await agentsOnEachReplica(runtime);
    const submitted: Array<{ run: Run; agent: AgentDouble }> = [];
    for (let i = 0; i < 9; i++) {
      // Submitted on replica i % 3, pinned to the agent linked to the next replica.
      const agent = agents[(i + 1) % 3]!;
      const { run } = await admins[i % 3]!.submitRun({
        runtime,
        command: [`${i}`],
        placement: { workstation_id: agent.workstationId },
      });
      submitted.push({ run, agent });
    }
    for (const { run, agent } of submitted) {
      await agent.waitFor('offer', (m) => m.id === run.id);
      const claim = await agent.client.claimRun(run.id, { runner_id: 'r', lease_ms: 30_000 });
      await agent.client.reportStatus(run.id, {
        fencing_token: claim.fencing_token,
        status: 'completed',
        exit_code: 0,
      });
    }
    for (const { run, agent } of submitted) {
      expect((await admins[0]!.getRun(run.id)).run.status).toBe('completed');
      expect(offersOf(agent, run.id)).toBe(1);
      for (const other of agents) if (other !== agent) expect(offersOf(other, run.id)).toBe(0);
    }
  });

  it('places unpinned runs submitted round-robin onto agents of every replica', async () => {
    const runtime = uniqueRuntime();
    const agents = await agentsOnEachReplica(runtime);
    const runs: Run[] = [];
    for (let i = 0; i < 12; i++)
      runs.push((await admins[i % 3]!.submitRun({ runtime, command: [`${i}`] })).run);
    const holders = await Promise.all(
      runs.map((run) =>
        eventually(() => agents.find((g) => offersOf(g, run.id) > 0), `an offer of ${run.id}`),
      ),
    );
    for (const [i, run] of runs.entries()) {
      expect(agents.reduce((n, g) => n + offersOf(g, run.id), 0)).toBe(1);
      const claim = await holders[i]!.client.claimRun(run.id, { runner_id: 'r', lease_ms: 30_000 });
      await holders[i]!.client.reportStatus(run.id, {
        fencing_token: claim.fencing_token,
        status: 'completed',
        exit_code: 0,
      });
    }
    expect(new Set(holders).size).toBe(3);
  });

  it('offers a run submitted on the replica holding the link from the submit itself: plain, or leased to the runner that asked for claim on offer', async () => {
    const runtime = uniqueRuntime();
    // A plain link on replica b: the submit's answer already shows the run offered (no pass
    // placed it: the tick is a minute, and a pass would answer `queued` first), and the offer
    // arrives exactly once, on that link only.
    const plain = await pairAgent(replicas[1]!, 'same-replica-plain', [runtime]);
    await plain.connect({ cpu_count: 4, max_runs: 4 });
    const { run } = await admins[1]!.submitRun({ runtime, command: ['plain'] });
    expect([run.status, run.workstation_id]).toEqual(['offered', plain.workstationId]);
    await plain.waitFor('offer', (m) => m.id === run.id);
    const claim = await plain.client.claimRun(run.id, { runner_id: 'r', lease_ms: 30_000 });
    await plain.client.reportStatus(run.id, {
      fencing_token: claim.fencing_token,
      status: 'completed',
      exit_code: 0,
    });
    expect(offersOf(plain, run.id)).toBe(1);

    // A link asking for claim on offer on replica c: the answer shows the run accepted, leased
    // to that runner, and the agent gets it leased (`offer-claimed`) with the same token.
    const runtime2 = uniqueRuntime();
    const claimer = await pairAgent(replicas[2]!, 'same-replica-claimer', [runtime2]);
    const { ws, got } = await openTestLink(replicas[2]!, claimer.token, 'claimer', [runtime2], {
      runner_id: 'r9',
      lease_ms: 30_000,
    });
    try {
      const leased = (await admins[2]!.submitRun({ runtime: runtime2, command: ['claimed'] })).run;
      expect(leased).toMatchObject({
        status: 'accepted',
        workstation_id: claimer.workstationId,
        lease: { holder: `${claimer.workstationId}/r9` },
      });
      const sent = await eventually(
        () =>
          got.flatMap((m) => (m.type === 'offer-claimed' ? m.runs : [])).find((c) => c.run.id === leased.id),
        'offer-claimed',
      );
      expect(sent.fencing_token).toBe(leased.lease!.fencing_token);
      expect(got.some((m) => m.type === 'offer')).toBe(false);
      // Reported on with the token that came with it, no claim.
      await claimer.client.reportStatus(leased.id, {
        fencing_token: sent.fencing_token,
        status: 'completed',
        exit_code: 0,
      });
      expect((await admins[0]!.getRun(leased.id)).run.status).toBe('completed');
    } finally {
      ws.close();
    }
  });

  it('delivers a cancel sent to a replica that does not hold the link, and a drain', async () => {
    const runtime = uniqueRuntime();
    const agents = await agentsOnEachReplica(runtime);
    const onB = agents[1]!;
    const { run } = await admins[0]!.submitRun({
      runtime,
      command: ['sleep'],
      placement: { workstation_id: onB.workstationId },
    });
    await onB.waitFor('offer', (m) => m.id === run.id);
    const claim = await onB.client.claimRun(run.id, { runner_id: 'r', lease_ms: 30_000 });
    await onB.client.reportStatus(run.id, { fencing_token: claim.fencing_token, status: 'running' });
    await admins[2]!.cancelRun(run.id);
    await onB.waitFor('cancel', (m) => m.run_id === run.id);
    const drained = await replicas[0]!.api(`/api/workstations/${onB.workstationId}/drain`, {
      token: a.adminToken,
      body: {},
    });
    expect(drained.status).toBeLessThan(300);
    await onB.waitFor('drain');
  });

  it('keeps a panel session opened on one replica valid on the others until it is signed out anywhere', async () => {
    const [ra, rb, rc] = replicas;
    const signIn = await fetch(`${ra!.cp.url}/sign-in`, {
      method: 'POST',
      redirect: 'manual',
      headers: { origin: ra!.cp.url, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: a.adminToken, next: '/workstations' }).toString(),
    });
    expect(signIn.status).toBe(303);
    const cookie = signIn.headers.get('set-cookie')!.split(';')[0]!;
    const fleet = (r: Harness) =>
      fetch(`${r.cp.url}/workstations`, { redirect: 'manual', headers: { cookie } });
    expect((await fleet(rb!)).status).toBe(200);
    expect((await fleet(rc!)).status).toBe(200);
    const out = await fetch(`${rc!.cp.url}/sign-out`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie, origin: rc!.cp.url },
    });
    expect(out.status).toBe(303);
    expect((await fleet(ra!)).status).toBe(401);
  });
});

describe('the generated admin token with replicas on postgres (no RUNT_ADMIN_TOKEN)', () => {
  it('is minted by exactly one of several replicas starting at once, kept by later starts, and works on every replica', async () => {
    const t = await createTestDatabase('postgres');
    const silent = new Writable({ write: (_c, _e, cb) => cb() });
    const start = (dataDir: string) =>
      startControlPlane(
        loadConfig(
          {},
          { port: 0, host: '127.0.0.1', dataDir, databaseUrl: t.url!, logLevel: 'info', ...QUIET },
        ),
        {
          logDestination: silent as unknown as NonNullable<StartOptions['logDestination']>,
        },
      );
    const dirs = [0, 1, 2].map((i) => mkdtempSync(join(tmpdir(), `runt-cp-admin-${i}-`)));
    const cps = await Promise.all(dirs.map(start));
    try {
      const holders = cps.filter((cp) => cp.adminTokenPath);
      expect(holders).toHaveLength(1);
      const token = readFileSync(holders[0]!.adminTokenPath!, 'utf8').trim();
      // A restart of a replica without the file mints nothing (it used to replace the token).
      const restarted = cps.findIndex((cp) => !cp.adminTokenPath);
      await cps[restarted]?.close();
      cps[restarted] = await start(dirs[restarted]!);
      expect(cps[restarted].adminTokenPath).toBeUndefined();
      for (const cp of cps) {
        const res = await fetch(`${cp.url}/api/workstations`, {
          headers: { authorization: `Bearer ${token}` },
        });
        expect(res.status).toBe(200);
      }
    } finally {
      for (const cp of cps) await cp.close();
      await t.dispose();
    }
  });
});

describe('a replica whose LISTEN connections drop, on postgres', () => {
  it('still gets the offers other replicas place for its agents (its scan re-sends them), and listens again', async () => {
    const a = await startHarness('postgres', {}, QUIET);
    const silent = new Writable({ write: (_c, _e, cb) => cb() });
    // B scans every 300 ms while its LISTEN is down; A's tick is a minute, so only A's submit kick places.
    const b = await startControlPlane(
      loadConfig(
        {},
        {
          port: 0,
          host: '127.0.0.1',
          dataDir: mkdtempSync(join(tmpdir(), 'runt-cp-b-')),
          adminToken: a.adminToken,
          databaseUrl: a.t.url!,
          logLevel: 'info',
          schedulerTickMs: 300,
          sweepIntervalMs: 60_000,
        },
      ),
      { logDestination: silent as unknown as NonNullable<StartOptions['logDestination']> },
    );
    try {
      await eventually(() => b.principals.stats().enabled, 'B listening');
      const runtime = uniqueRuntime();
      const agent = await pairAgent(replicaHarness(a, b), 'deaf-replica-box', [runtime]);
      await agent.connect();
      const admin = new ControlPlaneClient({ url: a.cp.url, token: a.adminToken, retries: 0 });
      const lost = b.principals.stats().listenLost;
      await a.t.db.query(
        `select pg_terminate_backend(pid) from pg_stat_activity where query ilike 'listen%' and datname = current_database()`,
      );
      await eventually(() => b.principals.stats().listenLost > lost, 'B to notice');
      const { run } = await admin.submitRun({ runtime, command: ['x'] });
      await agent.waitFor('offer', (m) => m.id === run.id);
      // Listening again: the next offer is delivered by the notification.
      await eventually(() => b.principals.stats().enabled, 'B listening again');
      const { run: next } = await admin.submitRun({ runtime, command: ['y'] });
      await agent.waitFor('offer', (m) => m.id === next.id);
    } finally {
      await b.close();
      await a.close();
    }
  });
});

// Rate limits live in the shared database, so replicas behind one load balancer spend one
// budget: spreading wrong guesses over them buys nothing.
describe('the 429 budget of two replicas on one postgres (default limits on both)', () => {
  it('is shared: wrong redeems spread over both are limited after 10 in all, and sign-in guesses on either then get 429 too', async () => {
    const a = await startHarness('postgres', {}, QUIET);
    const silent = new Writable({ write: (_c, _e, cb) => cb() });
    const b = await startControlPlane(
      loadConfig(
        {},
        {
          port: 0,
          host: '127.0.0.1',
          dataDir: mkdtempSync(join(tmpdir(), 'runt-cp-b-')),
          adminToken: a.adminToken,
          databaseUrl: a.t.url!,
          logLevel: 'info',
          ...QUIET,
        },
      ),
      { logDestination: silent as unknown as NonNullable<StartOptions['logDestination']> },
    );
    try {
      const urls = [a.cp.url, b.url];
      const redeem = (url: string) =>
        fetch(`${url}/api/workstations/pairing-codes/redeem`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ code: 'ZZZZ-ZZZZ-ZZZZ' }),
        });
      // 10 wrong codes (the per-address default), alternating: each replica saw only 5.
      for (let i = 0; i < 10; i++) expect((await redeem(urls[i % 2]!)).status).toBe(404);
      for (const url of urls) {
        const res = await redeem(url);
        expect(res.status).toBe(429);
        expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
        expect(await res.json()).toMatchObject({ error: { code: 'rate-limited' } });
      }
      // The panel's sign-in guesses count against the same per-address budget, on either replica.
      for (const url of urls) {
        const res = await fetch(`${url}/sign-in`, {
          method: 'POST',
          redirect: 'manual',
          headers: { origin: url, 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token: 'rnt_adm_wrong', next: '/workstations' }).toString(),
        });
        expect(res.status).toBe(429);
      }
      // A valid code still redeems on either (the limit never blocks a right code).
      const admin = new ControlPlaneClient({ url: b.url, token: a.adminToken, retries: 0 });
      const { pairing } = await admin.mintPairingCode();
      const ok = await fetch(`${a.cp.url}/api/workstations/pairing-codes/redeem`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ code: pairing.code, display_name: 'limited-but-right' }),
      });
      expect(ok.status).toBe(201);
    } finally {
      await b.close();
      await a.close();
    }
  });
});
