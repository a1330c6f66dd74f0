import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { ControlPlaneClient } from '@runt/protocol';
import { createSqlLeaseStore } from '@runt/leases';
import { countStatements, type Queryable } from '@runt/sql';
import { pino } from 'pino';
import { creditOutage } from '../src/runs/outage-clock.js';
import { Sweeper } from '../src/runs/sweeper.js';
import { startHarness, type Harness } from './harness.js';
import { migratedDatabase, noRelaySignals } from './scheduler-fixtures.js';
import { eventually, pairAgent, uniqueRuntime } from './agent-double.js';

const log = (seq: number) => ({ seq, type: 'log' as const, payload: { stream: 'stdout', data: `${seq}\n` } });

describe.each(TEST_BACKENDS)('sweeper and fencing on %s', (backend) => {
  let h: Harness;
  let admin: ControlPlaneClient;
  beforeAll(async () => {
    h = await startHarness(
      backend,
      {},
      { schedulerTickMs: 100, sweepIntervalMs: 100, offerTimeoutMs: 30_000 },
    );
    admin = new ControlPlaneClient({ url: h.cp.url, token: h.adminToken, retries: 0 });
  });
  afterAll(async () => h?.close());

  /** Lets a lease run out by the database clock (what waiting out `lease_ms` would do). */
  const expireLease = (runId: string) =>
    h.t.db.query(`update leases set expires_at = now() - interval '1 second' where resource = $1`, [runId]);
  const runOf = async (id: string) => (await admin.getRun(id)).run;

  async function claimed(maxAttempts = 3) {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, `sweep-${runtime}`, [runtime]);
    await agent.connect();
    const { run } = await admin.submitRun({ runtime, command: ['x'], max_attempts: maxAttempts });
    await agent.waitFor('offer', (m) => m.run.id === run.id);
    const claim = await agent.client.claimRun(run.id, { runner_id: 'old-runner', lease_ms: 60_000 });
    return { agent, run, token: claim.fencing_token };
  }

  it('never re-queues an accepted run whose lease expired: the workload may have started (at-most-once start)', async () => {
    const { agent, run, token } = await claimed();
    agent.messages.length = 0;
    await expireLease(run.id);
    await eventually(async () => (await runOf(run.id)).status === 'failed', 'the lost run to fail');
    expect(await runOf(run.id)).toMatchObject({
      status: 'failed',
      failure_kind: 'runner-lost',
      attempt: 1,
      lease: null,
    });
    expect(agent.messages.some((m) => m.type === 'offer' && m.run.id === run.id)).toBe(false);
    const late = await h.api(`/api/runs/${run.id}/claim`, {
      token: agent.token,
      body: { runner_id: 'new-runner', lease_ms: 5000 },
    });
    expect(late.status).toBe(409);
    expect(late.json.error.code).toBe('run-not-active');
    // The old holder's token is spent.
    const r = await h.api(`/api/runs/${run.id}/heartbeat`, {
      token: agent.token,
      body: { fencing_token: token, lease_ms: 5000 },
    });
    expect(r.status).toBe(409);
  });

  it('re-queues a run whose runner released it before it was running, and fences the old holder out (409)', async () => {
    const { agent, run, token } = await claimed();
    await agent.client.appendEvents(run.id, { fencing_token: token, events: [log(1)] });
    agent.messages.length = 0;
    await agent.client.releaseRun(run.id, { fencing_token: token });
    // Re-queued (attempt 2) and, with a free slot, offered again.
    const offer = await agent.waitFor('offer', (m) => m.run.id === run.id);
    expect(offer.run).toMatchObject({ attempt: 2, status: 'offered' });
    const events = (await admin.listEvents(run.id)).events;
    expect(events.map((e) => e.type)).toEqual(['log', 'error']);
    expect(events[1]!.payload).toMatchObject({ failure_kind: 'runner-lost', attempt: 1 });

    const fresh = await agent.client.claimRun(run.id, { runner_id: 'new-runner', lease_ms: 60_000 });
    expect(fresh.fencing_token).toBeGreaterThan(token);
    expect(fresh.next_event_seq).toBe(3);
    for (const [path, body] of [
      [`/api/runs/${run.id}/events`, { fencing_token: token, events: [log(3)] }],
      [`/api/runs/${run.id}/status`, { fencing_token: token, status: 'completed', exit_code: 0 }],
      [`/api/runs/${run.id}/heartbeat`, { fencing_token: token, lease_ms: 5000 }],
    ] as const) {
      const r = await h.api(path, { token: agent.token, body });
      expect(r.status, path).toBe(409);
      expect(r.json.error.code).toBe('runner-lease-conflict');
    }
    expect(
      (await agent.client.appendEvents(run.id, { fencing_token: fresh.fencing_token, events: [log(3)] }))
        .next_event_seq,
    ).toBe(4);
    await agent.client.reportStatus(run.id, {
      fencing_token: fresh.fencing_token,
      status: 'completed',
      exit_code: 0,
    });
    expect(await runOf(run.id)).toMatchObject({ status: 'completed', attempt: 2 });
  });

  it('refuses a fenced write once the lease ran out, even before the sweeper clears it', async () => {
    const { agent, run, token } = await claimed();
    await h.cp.sweeper.stop();
    try {
      await expireLease(run.id);
      const r = await h.api(`/api/runs/${run.id}/events`, {
        token: agent.token,
        body: { fencing_token: token, events: [log(1)] },
      });
      expect(r.status).toBe(409);
      expect(r.json.error).toMatchObject({ code: 'runner-lease-conflict', details: { reason: 'expired' } });
      expect(
        (
          await h.api(`/api/runs/${run.id}/heartbeat`, {
            token: agent.token,
            body: { fencing_token: token, lease_ms: 5000 },
          })
        ).json.error.code,
      ).toBe('runner-lease-conflict');
    } finally {
      h.cp.sweeper.start();
    }
  });

  it('fails a running run whose runner was lost with runner-lost, never starting it twice', async () => {
    const { agent, run, token } = await claimed();
    await agent.client.reportStatus(run.id, { fencing_token: token, status: 'running' });
    await expireLease(run.id);
    await eventually(async () => (await runOf(run.id)).status === 'failed', 'the run to fail');
    expect(await runOf(run.id)).toMatchObject({
      status: 'failed',
      failure_kind: 'runner-lost',
      attempt: 1,
      lease: null,
    });
    const last = (await admin.listEvents(run.id)).events.at(-1)!;
    expect(last).toMatchObject({
      type: 'terminal_status',
      payload: { status: 'failed', failure_kind: 'runner-lost' },
    });
    const late = await h.api(`/api/runs/${run.id}/status`, {
      token: agent.token,
      body: { fencing_token: token, status: 'completed' },
    });
    expect(late.json.error.code).toBe('run-not-active');
  });

  it('fails a lost run that has no attempts left', async () => {
    const { run } = await claimed(1);
    await expireLease(run.id);
    await eventually(async () => (await runOf(run.id)).status === 'failed', 'the run to fail');
    expect(await runOf(run.id)).toMatchObject({ failure_kind: 'runner-lost', attempt: 1 });
  });

  it('cancels a cancel-requested run whose runner was lost', async () => {
    const { run } = await claimed();
    await admin.cancelRun(run.id);
    await expireLease(run.id);
    await eventually(async () => (await runOf(run.id)).status === 'cancelled', 'the run to be cancelled');
  });

  it('takes back an offer nobody claimed in time', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'slow-claimer', [runtime]);
    await agent.connect({ max_runs: 1 });
    const { run } = await admin.submitRun({ runtime, command: ['x'] });
    await agent.waitFor('offer', (m) => m.run.id === run.id);
    agent.link!.close(); // gone: nothing will take it over
    await agent.waitClosed();
    await h.t.db.query(`update runs set offered_at = now() - interval '1 hour' where id = $1`, [run.id]);
    await eventually(async () => (await runOf(run.id)).status === 'queued', 'the offer to come back');
    expect(await runOf(run.id)).toMatchObject({ attempt: 1, workstation_id: null, offered_at: null });
    const late = await h.api(`/api/runs/${run.id}/claim`, {
      token: agent.token,
      body: { runner_id: 'r', lease_ms: 5000 },
    });
    expect(late.json.error.code).toBe('run-not-offered');
  });

  it('re-queues a run its runner released before it was running; a running one fails', async () => {
    const first = await claimed();
    await first.agent.client.releaseRun(first.run.id, { fencing_token: first.token });
    expect(await runOf(first.run.id)).toMatchObject({ attempt: 2, lease: null });
    expect(['queued', 'offered']).toContain((await runOf(first.run.id)).status);

    const second = await claimed();
    await second.agent.client.reportStatus(second.run.id, { fencing_token: second.token, status: 'running' });
    await second.agent.client.releaseRun(second.run.id, { fencing_token: second.token });
    expect(await runOf(second.run.id)).toMatchObject({ status: 'failed', failure_kind: 'runner-lost' });
    await second.agent.client.releaseRun(second.run.id, { fencing_token: second.token }); // idempotent
  });

  it('refuses a claim while another runner of the workstation holds a live lease', async () => {
    const { agent, run } = await claimed();
    const r = await h.api(`/api/runs/${run.id}/claim`, {
      token: agent.token,
      body: { runner_id: 'someone-else', lease_ms: 5000 },
    });
    expect(r.status).toBe(409);
    expect(r.json.error.code).toBe('runner-lease-conflict');
  });

  it('credits a control-plane outage to live leases: a run that finished during it is not lost (issue 8, defect 5)', async () => {
    const { agent, run, token } = await claimed();
    await agent.client.reportStatus(run.id, { fencing_token: token, status: 'running' });
    await h.cp.sweeper.stop();
    try {
      // As if no control plane had run for 60 s: the last sweep was then, the lease ran out 30 s ago.
      await h.t.db.query(`update sweep_clock set swept_at = clock_timestamp() - interval '60 seconds'`);
      await h.t.db.query(
        `update leases set expires_at = clock_timestamp() - interval '30 seconds' where resource = $1`,
        [run.id],
      );
      const swept = await h.cp.sweeper.sweep();
      expect(swept.outageCreditedMs).toBeGreaterThanOrEqual(60_000);
      expect(swept.lost.map((l) => l.runId)).not.toContain(run.id);
      // The agent, back on line, reports the workload's real exit status.
      await agent.client.reportStatus(run.id, { fencing_token: token, status: 'completed', exit_code: 0 });
      expect(await runOf(run.id)).toMatchObject({ status: 'completed', exit_code: 0, attempt: 1 });

      // No outage (the clock was just stamped): an expired lease is lost as before.
      const second = await claimed();
      await second.agent.client.reportStatus(second.run.id, {
        fencing_token: second.token,
        status: 'running',
      });
      await expireLease(second.run.id);
      const next = await h.cp.sweeper.sweep();
      expect(next.outageCreditedMs).toBe(0);
      expect(next.lost).toContainEqual({ runId: second.run.id, outcome: 'failed' });
    } finally {
      h.cp.sweeper.start();
    }
  });

  it('handles each lost runner once when sweeps race', async () => {
    const many = await Promise.all([0, 1, 2].map(() => claimed(1)));
    await h.cp.sweeper.stop();
    try {
      for (const c of many) await expireLease(c.run.id);
      const results = await Promise.all([h.cp.sweeper.sweep(), h.cp.sweeper.sweep(), h.cp.sweeper.sweep()]);
      const handled = results
        .flatMap((r) => r.lost.map((l) => l.runId))
        .filter((id) => many.some((c) => c.run.id === id));
      expect(handled.sort()).toEqual(many.map((c) => c.run.id).sort());
      for (const c of many) {
        const terminal = (await admin.listEvents(c.run.id)).events.filter(
          (e) => e.type === 'terminal_status',
        );
        expect(terminal).toHaveLength(1);
      }
    } finally {
      h.cp.sweeper.start();
    }
  });
});

describe.each(TEST_BACKENDS)('a control plane restarted after an outage, on %s', (backend) => {
  it('credits the outage before it listens: the first renewal after the restart is not refused (issue 8)', async () => {
    // The first sweep comes 5 s after a start (an outage is a gap of more than 50 s then): the
    // renewal below arrives before it, so only a credit made at start-up can save the lease.
    const quiet = { schedulerTickMs: 100, sweepIntervalMs: 5_000, offerTimeoutMs: 30_000 };
    const first = await startHarness(backend, {}, quiet);
    let second: Harness | undefined;
    try {
      const admin = new ControlPlaneClient({ url: first.cp.url, token: first.adminToken, retries: 0 });
      const runtime = uniqueRuntime();
      const agent = await pairAgent(first, `restart-${runtime}`, [runtime]);
      await agent.connect();
      const { run } = await admin.submitRun({ runtime, command: ['x'] });
      await agent.waitFor('offer', (m) => m.run.id === run.id);
      const claim = await agent.client.claimRun(run.id, { runner_id: 'r1', lease_ms: 30_000 });
      await agent.client.reportStatus(run.id, { fencing_token: claim.fencing_token, status: 'running' });
      await first.cp.close();
      // As if the control plane had been down 120 s: the last sweep was then, the lease ran out 30 s ago.
      await first.t.db.query(`update sweep_clock set swept_at = clock_timestamp() - interval '120 seconds'`);
      await first.t.db.query(
        `update leases set expires_at = clock_timestamp() - interval '30 seconds' where resource = $1`,
        [run.id],
      );
      second = await startHarness(backend, {}, quiet, first.t);
      const renewed = await second.api(`/api/runs/${run.id}/heartbeat`, {
        token: agent.token,
        body: { fencing_token: claim.fencing_token, lease_ms: 30_000 },
      });
      expect(renewed.status, JSON.stringify(renewed.json)).toBe(200);
      const done = await second.api(`/api/runs/${run.id}/status`, {
        token: agent.token,
        body: { fencing_token: claim.fencing_token, status: 'completed', exit_code: 0 },
      });
      expect(done.status, JSON.stringify(done.json)).toBe(200);
      expect(done.json.run).toMatchObject({ status: 'completed', exit_code: 0, attempt: 1 });
    } finally {
      if (second) await second.close();
      else await first.close();
    }
  });
});

describe.each(TEST_BACKENDS)("the sweep's outage clock, on %s", (backend) => {
  it('sweeps in one round trip while nothing ran out, and the next sweep still clears a lease that did (issue 10)', async () => {
    const t = await migratedDatabase(backend);
    try {
      let roundTrips = 0;
      const db = countStatements(t.db, (c) => (roundTrips += c.roundTrips));
      const sweeper = new Sweeper({
        db,
        logger: pino({ level: 'silent' }),
        leases: createSqlLeaseStore(db),
        signals: noRelaySignals(),
        intervalMs: 1000,
        offerTimeoutMs: 30_000,
      });
      await sweeper.sweep(); // the clock's first stamp
      // A live lease: nothing due.
      await t.db.query(
        `insert into leases (resource, holder, fencing_token, expires_at, acquired_at)
           values ('run_live', 'r', 1, clock_timestamp() + interval '30 seconds', clock_timestamp())`,
      );
      roundTrips = 0;
      const idle = await sweeper.sweep();
      expect(roundTrips).toBe(1);
      expect(idle).toEqual({
        lost: [],
        offersRequeued: [],
        outageCreditedMs: 0,
        unplaceable: [],
        timedOut: [],
      });
      // A lease runs out (its run is gone: cleared, nothing to lose): the next sweep clears it.
      await t.db.query(
        `insert into leases (resource, holder, fencing_token, expires_at, acquired_at)
           values ('run_gone', 'r', 1, clock_timestamp() - interval '1 second', clock_timestamp() - interval '1 minute')`,
      );
      roundTrips = 0;
      await sweeper.sweep();
      expect(roundTrips).toBeGreaterThan(1);
      const held = await t.db.query<{ resource: string; holder: string | null }>(
        `select resource, holder from leases order by resource`,
      );
      expect(held.rows).toEqual([
        { resource: 'run_gone', holder: null },
        { resource: 'run_live', holder: 'r' },
      ]);
    } finally {
      await t.dispose();
    }
  });

  it('reads, credits and stamps the clock in one round trip, the credit as before', async () => {
    const t = await migratedDatabase(backend);
    try {
      let roundTrips = 0;
      const db = countStatements(t.db, (c) => (roundTrips += c.roundTrips));
      const sweeper = new Sweeper({
        db,
        logger: pino({ level: 'silent' }),
        leases: createSqlLeaseStore(db),
        signals: noRelaySignals(),
        // An outage is a gap over 10 s (never started: no timer).
        intervalMs: 1000,
        offerTimeoutMs: 30_000,
      });
      // No clock yet: stamped, nothing credited.
      expect(await sweeper.creditOutage()).toBe(0);
      // A sweep 60 s ago; a lease live then (and now), one that had run out before it.
      await t.db.query(`update sweep_clock set swept_at = clock_timestamp() - interval '60 seconds'`);
      await t.db.query(
        `insert into leases (resource, holder, fencing_token, expires_at, acquired_at)
           values ('run_live', 'r', 1, clock_timestamp() + interval '5 seconds', clock_timestamp()),
                  ('run_gone', 'r', 1, clock_timestamp() - interval '90 seconds', clock_timestamp() - interval '2 minutes')`,
      );
      const before = await t.db.query<{ resource: string; ms: number }>(
        `select resource, extract(epoch from expires_at) * 1000 as ms from leases order by resource`,
      );
      roundTrips = 0;
      const credited = await sweeper.creditOutage();
      expect(credited).toBeGreaterThanOrEqual(60_000);
      expect(credited).toBeLessThan(70_000);
      // The next sweep finds the clock just stamped: no outage.
      expect(await sweeper.creditOutage()).toBe(0);
      expect(roundTrips).toBe(2);
      const after = await t.db.query<{ resource: string; ms: number }>(
        `select resource, extract(epoch from expires_at) * 1000 as ms from leases order by resource`,
      );
      // run_gone had expired before the last sweep: not credited; run_live: by the whole gap.
      expect(after.rows.map((r, i) => Math.round(Number(r.ms) - Number(before.rows[i]!.ms)))).toEqual([
        0,
        credited,
      ]);
    } finally {
      await t.dispose();
    }
  });

  it("the idle sweep's probe scans no run table on 20,000 runs never analyzed, custom and generic plans", async () => {
    const t = await migratedDatabase(backend);
    try {
      await t.db.query(
        `insert into runs (id, status, runtime, workstation_id, finished_at)
           select 'old_' || g, 'completed', 'sh', 'ws_1', now() from generate_series(1, 20000) g`,
      );
      await t.db.query(
        `insert into runs (id, status, runtime, workstation_id, offered_at, accepted_at, started_at)
           select 'run_' || g, 'running', 'sh', 'ws_1', now(), now(), now() from generate_series(1, 5) g`,
      );
      let sent: { text: string; params: unknown[] } | undefined;
      const recording: Queryable = {
        backend: t.db.backend,
        query: (text, params) => {
          sent ??= { text, params: params ?? [] }; // the probe is the sweep's first statement
          return t.db.query(text, params);
        },
        transaction: t.db.transaction.bind(t.db),
      } as Queryable;
      const sweeper = new Sweeper({
        db: recording as never,
        logger: pino({ level: 'silent' }),
        leases: createSqlLeaseStore(t.db),
        signals: noRelaySignals(),
        intervalMs: 1000,
        offerTimeoutMs: 30_000,
      });
      expect((await sweeper.sweep()).timedOut).toEqual([]);
      expect(sent!.text).toContain('exists (select 1 from runs');
      const plans = await t.db.transaction(async (tx) => {
        const analyze = 'explain (analyze, costs off, timing off, summary off)';
        const custom = await tx.query<{ 'QUERY PLAN': string }>(`${analyze} ${sent!.text}`, sent!.params);
        await tx.query(`set local plan_cache_mode = force_generic_plan`);
        await tx.query(`prepare sweep_probe as ${sent!.text}`);
        const generic = await tx.query<{ 'QUERY PLAN': string }>(
          `${analyze} execute sweep_probe(${sent!.params.map((p) => Number(p)).join(', ')})`,
        );
        await tx.query('deallocate sweep_probe');
        return [custom, generic].map((r) => r.rows.map((x) => x['QUERY PLAN']).join('\n'));
      });
      for (const plan of plans) expect(plan).not.toMatch(/Seq Scan on runs/);
    } finally {
      await t.dispose();
    }
  });

  it('reads no lease without an outage, on 20,000 kept leases, custom and generic plans', async () => {
    const t = await migratedDatabase(backend);
    try {
      // Every lease row ever kept: most released or run out, some held and live.
      await t.db.query(
        `insert into leases (resource, holder, fencing_token, expires_at, acquired_at)
           select 'run_' || i, case when i % 10 = 0 then 'r' end, 1,
                  clock_timestamp() + (case when i % 10 = 0 then 30 else -600 end) * interval '1 second',
                  clock_timestamp() - interval '10 minutes'
             from generate_series(1, 20000) i`,
      );
      await t.db.query('analyze leases');
      let sent: { text: string; params: unknown[] } | undefined;
      const recording: Queryable = {
        backend: t.db.backend,
        query: (text, params) => {
          sent = { text, params: params ?? [] };
          return t.db.query(text, params);
        },
      } as Queryable;
      expect(await creditOutage(recording, 10_000)).toBe(0); // stamps the clock
      const plans = await t.db.transaction(async (tx) => {
        const analyze = 'explain (analyze, costs off, timing off, summary off)';
        const custom = await tx.query<{ 'QUERY PLAN': string }>(`${analyze} ${sent!.text}`, sent!.params);
        await tx.query(`set local plan_cache_mode = force_generic_plan`);
        await tx.query(`prepare outage_clock_probe as ${sent!.text}`);
        const generic = await tx.query<{ 'QUERY PLAN': string }>(
          `${analyze} execute outage_clock_probe(${Number(sent!.params[0])})`,
        );
        await tx.query('deallocate outage_clock_probe');
        return [custom, generic].map((r) => r.rows.map((x) => x['QUERY PLAN']).join('\n'));
      });
      for (const plan of plans) {
        const scans = plan.split('\n').filter((l) => /Scan\b.* on leases/.test(l));
        expect(scans.length, plan).toBeGreaterThan(0);
        for (const scan of scans) expect(scan, plan).toContain('never executed');
      }
    } finally {
      await t.dispose();
    }
  });
});
