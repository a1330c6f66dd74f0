import { Writable } from 'node:stream';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlaneClient } from '@runt/protocol';
import type { Database } from '@runt/sql';
import { createTestDatabase, type TestDatabase } from '@runt/sql/testing';
import { loadConfig, type ControlPlaneConfig } from '../src/config.js';
import { startControlPlane, type RunningControlPlane, type StartOptions } from '../src/server.js';
import { startHarness, type Harness } from './harness.js';
import { eventually, pairAgent, uniqueRuntime } from './agent-double.js';

// Ticks of a minute: whatever reaches an agent within the test's bounds came through a signal.
const QUIET: Partial<ControlPlaneConfig> = { schedulerTickMs: 60_000, sweepIntervalMs: 60_000 };

/**
 * The database of a replica that loses every publish made after a commit: a statement of its
 * own that only publishes (`select pg_notify(…)` outside a transaction) fails, as it would when
 * the connection (or the process) goes away between the writer's commit and the publish. What
 * is published inside the writer's transaction is unaffected.
 */
function losingPostCommitPublishes(db: Database): { db: Database; lost: () => number } {
  let lost = 0;
  type Lane = Omit<Database, 'priority'> & { priority: Database };
  const wrap = (d: Database): Lane =>
    ({
      backend: d.backend,
      query: (sql: string, params?: unknown[]) => {
        if (/^\s*select pg_notify\(/i.test(sql)) {
          lost++;
          return Promise.reject(new Error('connection lost after the commit'));
        }
        return d.query(sql, params);
      },
      transaction: (fn: Parameters<Database['transaction']>[0]) => d.transaction(fn),
      ...(d.listen ? { listen: d.listen.bind(d) } : {}),
      close: () => d.close(),
    }) as unknown as Lane;
  // The priority lane (renewals, credential lookups) is a database of its own, whose lane is itself.
  const main = wrap(db);
  const lane = db.priority === db ? main : wrap(db.priority);
  lane.priority = lane;
  main.priority = lane;
  return { db: main, lost: () => lost };
}

describe('run signals published in the writer transaction, two replicas on postgres', () => {
  let a: Harness;
  let b: RunningControlPlane;
  let lost: () => number;
  let bHarness: Harness;
  let adminA: ControlPlaneClient;
  beforeAll(async () => {
    const t: TestDatabase = await createTestDatabase('postgres');
    const losing = losingPostCommitPublishes(t.db);
    lost = losing.lost;
    // A times runs out itself as soon as they pass their timeout_s (no grace).
    a = await startHarness('postgres', {}, { ...QUIET, runTimeoutGraceS: 0 }, { ...t, db: losing.db });
    const silent = new Writable({ write: (_c, _e, cb) => cb() });
    b = await startControlPlane(
      loadConfig(
        {},
        {
          port: 0,
          host: '127.0.0.1',
          dataDir: mkdtempSync(join(tmpdir(), 'runt-cp-b-')),
          adminToken: a.adminToken,
          databaseUrl: t.url!,
          logLevel: 'info',
          ...QUIET,
        },
      ),
      { logDestination: silent as unknown as NonNullable<StartOptions['logDestination']> },
    );
    bHarness = { ...a, cp: b };
    adminA = new ControlPlaneClient({ url: a.cp.url, token: a.adminToken, retries: 0 });
    await eventually(() => a.cp.principals.stats().enabled && b.principals.stats().enabled, 'listening');
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  it('delivers a cancel, a command and a drain written on A to the agent linked to B, though A loses every publish after a commit', async () => {
    const runtime = uniqueRuntime();
    // Paired and linked through B (pairAgent uses the harness's URL for its HTTP calls and link).
    const agent = await pairAgent({ ...bHarness, api: apiOf(b.url) }, 'signals-box', [runtime]);
    await agent.connect({ cpu_count: 4, max_runs: 4 });

    const { run } = await adminA.submitRun({ runtime, command: ['sleep'] });
    // The offer is published in the scheduler's transaction, so it arrives despite A's losses.
    await agent.waitFor('offer', (m) => m.id === run.id);
    const claim = await agent.client.claimRun(run.id, { runner_id: 'r', lease_ms: 30_000 });
    await agent.client.reportStatus(run.id, { fencing_token: claim.fencing_token, status: 'running' });

    await adminA.queueCommand(run.id, { type: 'exec', command: ['ls'] });
    await agent.waitFor('command', (m) => m.run_id === run.id);

    await adminA.cancelRun(run.id);
    await agent.waitFor('cancel', (m) => m.run_id === run.id);

    await adminA.drainWorkstation(agent.workstationId);
    await agent.waitFor('drain');

    // Every one of them went through A (the runs and the workstation are not linked there).
    expect(a.cp.links.get(agent.workstationId)).toBeUndefined();
    // and none of them was left to a publish after its commit.
    expect(lost()).toBe(0);
  });

  it('delivers the cancel of a run that A times out to the agent linked to B, though A loses every publish after a commit', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent({ ...bHarness, api: apiOf(b.url) }, 'timeout-box', [runtime]);
    await agent.connect({ cpu_count: 2, max_runs: 2 });
    const { run } = await adminA.submitRun({ runtime, command: ['sleep'], timeout_s: 1 });
    await agent.waitFor('offer', (m) => m.id === run.id);
    const claim = await agent.client.claimRun(run.id, { runner_id: 'r', lease_ms: 30_000 });
    await agent.client.reportStatus(run.id, { fencing_token: claim.fencing_token, status: 'running' });
    const lostBefore = lost();
    // The agent does not stop it; past timeout_s A's sweeper ends it and tells the agent.
    await eventually(
      async () => (await a.cp.sweeper.sweep()).timedOut.includes(run.id),
      'a sweep on A to time the run out',
    );
    await agent.waitFor('cancel', (m) => m.run_id === run.id);
    expect(a.cp.links.get(agent.workstationId)).toBeUndefined();
    // Neither the cancel nor the freed slot was left to a publish after the commit.
    expect(lost()).toBe(lostBefore);
  });
});

/** A harness `api` against another replica's URL (pairing and admin calls go to that replica). */
function apiOf(url: string): Harness['api'] {
  return async (path, init = {}) => {
    const headers: Record<string, string> = { ...init.headers };
    if (init.token) headers.authorization = `Bearer ${init.token}`;
    const body = init.raw ?? (init.body === undefined ? undefined : JSON.stringify(init.body));
    if (body !== undefined) headers['content-type'] ??= 'application/json';
    const res = await fetch(`${url}${path}`, {
      method: init.method ?? (body === undefined ? 'GET' : 'POST'),
      headers,
      ...(body === undefined ? {} : { body }),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : undefined };
  };
}
