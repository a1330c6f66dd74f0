import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { hashToken } from '@runt/transport-auth';
import type { Database } from '@runt/sql';
import type { RegisterWorkstationRequest } from '@runt/protocol';
import { LinkRegistrations } from '../src/link/link-registrations.js';
import { NotificationBus } from '../src/notifications/bus.js';
import { RunStore } from '../src/runs/run-store.js';
import { CredentialStore } from '../src/stores/credential-store.js';
import { PrincipalCache } from '../src/stores/principal-cache.js';
import { WorkstationStore } from '../src/stores/workstation-store.js';
import { startHarness, type Harness } from './harness.js';
import { eventually, pairAgent, type AgentDouble } from './agent-double.js';

/** The harness's database (both lanes), recording every statement sent through it. */
function recording(db: Database): { db: Database; statements: string[] } {
  const statements: string[] = [];
  const wrap = (inner: Database): Database => {
    const counted: Database = {
      backend: inner.backend,
      query: (text, params) => {
        statements.push(text.replace(/\s+/g, ' ').trim());
        return inner.query(text, params);
      },
      transaction: (fn) => {
        statements.push('BEGIN');
        return inner.transaction(fn);
      },
      close: () => Promise.resolve(),
      get priority() {
        return priority;
      },
    };
    const priority = inner.priority === inner ? counted : wrap(inner.priority);
    return counted;
  };
  return { db: wrap(db), statements };
}

const body = (name: string, listening = true): RegisterWorkstationRequest => ({
  display_name: name,
  cpu_count: 2,
  max_runs: 3,
  runtimes: ['fake'],
  labels: { pool: 'batch' },
  agent_version: '0.0.0-test',
  listening,
});

// A fleet re-linking after a restart: thousands of upgrades and `register` messages a second.
// Those that arrive together share their statements, and each still gets exactly its own answer.
describe.each(TEST_BACKENDS)('link open path batching on %s', (backend) => {
  let h: Harness;
  const agents: AgentDouble[] = [];
  beforeAll(async () => {
    h = await startHarness(backend);
    for (let i = 0; i < 6; i++) agents.push(await pairAgent(h, `batch-${i}`, ['fake']));
  });
  afterAll(async () => h?.close());

  it('concurrent credential lookups are one statement; revoked, unknown and wrong-kind tokens still resolve to nothing', async () => {
    const revoked = agents[5]!;
    const revoke = await h.api(`/api/workstations/credentials/${revoked.credentialId}/revoke`, {
      method: 'POST',
      token: h.adminToken,
    });
    expect(revoke.status).toBe(200);
    const { db, statements } = recording(h.t.db);
    // A fresh cache (and a bus never started): every resolve below misses and reads the database.
    const principals = new PrincipalCache(db, new NotificationBus(db, {}));
    const answers = await Promise.all([
      ...agents.map((a) => principals.resolve(hashToken(a.token), 'workstation')),
      principals.resolve(hashToken(agents[0]!.token), 'admin'),
      principals.resolve(hashToken('rnt_ws_' + 'B'.repeat(43)), 'workstation'),
      principals.resolve(hashToken(h.adminToken), 'admin'),
    ]);
    expect(answers.slice(0, 5).map((p) => p?.workstationId)).toEqual(
      agents.slice(0, 5).map((a) => a.workstationId),
    );
    expect(answers[5]).toBeUndefined(); // revoked
    expect(answers[6]).toBeUndefined(); // a workstation token asked for as an admin one
    expect(answers[7]).toBeUndefined(); // unknown
    expect(answers[8]?.kind).toBe('admin');
    expect(statements.filter((s) => s.startsWith('select') && s.includes('from credentials'))).toHaveLength(
      1,
    );
  });

  it('stale last_used_at refreshes found by separate lookups within a second are one statement', async () => {
    const live = agents.slice(0, 5);
    await h.t.db.query('update credentials set last_used_at = null where workstation_id = any($1::text[])', [
      live.map((a) => a.workstationId),
    ]);
    const { db, statements } = recording(h.t.db);
    const principals = new PrincipalCache(db, new NotificationBus(db, {}));
    // One lookup after another: five batched reads, each finding a stale credential.
    for (const a of live)
      expect((await principals.resolve(hashToken(a.token), 'workstation'))?.workstationId).toBe(
        a.workstationId,
      );
    expect(statements.filter((s) => s.startsWith('select') && s.includes('from credentials'))).toHaveLength(
      5,
    );
    await eventually(
      () => statements.some((s) => s.startsWith('update credentials set last_used_at')),
      'the refresh',
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(statements.filter((s) => s.startsWith('update credentials set last_used_at'))).toHaveLength(1);
    const fresh = await h.t.db.query<{ n: number }>(
      `select count(*)::int as n from credentials where workstation_id = any($1::text[]) and last_used_at > now() - interval '1 minute'`,
      [live.map((a) => a.workstationId)],
    );
    expect(fresh.rows[0]!.n).toBe(5);
    principals.close();
  });

  it('registrations that arrive together are one update; each link hears its own pending drain', async () => {
    const live = agents.slice(0, 5);
    await h.t.db.query('update workstations set draining = true where id = $1', [live[1]!.workstationId]);
    const { db, statements } = recording(h.t.db);
    const principals = new PrincipalCache(db, new NotificationBus(db, {}));
    const workstations = new WorkstationStore(db, new CredentialStore(db, principals));
    const registrations = new LinkRegistrations({
      workstations,
      runs: new RunStore(db),
      replicaId: 'cp-test',
    });
    const answers = await Promise.all(
      live.map((a, i) => registrations.register(a.workstationId, body(`batch-${i}`))),
    );
    expect(answers.map((a) => a.draining)).toEqual([false, true, false, false, false]);
    expect(answers.every((a) => a.offered.length === 0 && a.cancels.length === 0)).toBe(true);
    expect(statements.filter((s) => s.startsWith('update workstations'))).toHaveLength(1);
    expect(statements).toHaveLength(2); // the update; offered runs and pending cancels in one read
    const rows = await h.t.db.query<{
      id: string;
      link_state: string;
      link_replica: string;
      max_runs: number;
      labels: unknown;
      registered: boolean;
    }>(
      `select id, link_state, link_replica, max_runs, labels, registered_at is not null as registered
         from workstations where id = any($1::text[]) order by id`,
      [live.map((a) => a.workstationId)],
    );
    expect(rows.rows).toHaveLength(5);
    for (const row of rows.rows)
      expect(row).toMatchObject({
        link_state: 'connected',
        link_replica: 'cp-test',
        max_runs: 3,
        labels: { pool: 'batch' },
        registered: true,
      });
    // A draining workstation whose agent registers as not listening has stopped: drain over.
    const stopped = await registrations.register(live[1]!.workstationId, body('batch-1', false));
    expect(stopped.draining).toBe(false);
  });
  it('registrations spread over one gather window after a batch are one more batch, not one each', async () => {
    const live = agents.slice(0, 4);
    const { db, statements } = recording(h.t.db);
    const principals = new PrincipalCache(db, new NotificationBus(db, {}));
    const registrations = new LinkRegistrations({
      workstations: new WorkstationStore(db, new CredentialStore(db, principals)),
      runs: new RunStore(db),
      replicaId: 'cp-test',
      gatherMs: 300,
    });
    const updates = () => statements.filter((s) => s.startsWith('update workstations')).length;
    // An idle control plane writes the first at once.
    const started = performance.now();
    await registrations.register(live[0]!.workstationId, body('gather-0'));
    expect(performance.now() - started).toBeLessThan(250);
    expect(updates()).toBe(1);
    // The next three arrive one by one, each after the one batch in flight was written.
    const later: Promise<unknown>[] = [];
    for (const a of live.slice(1)) {
      later.push(registrations.register(a.workstationId, body('gather-n')));
      await new Promise((r) => setTimeout(r, 30));
    }
    await Promise.all(later);
    expect(updates()).toBe(2);
    expect(statements).toHaveLength(4); // per batch: the update, and the offered-runs read
  });
});
