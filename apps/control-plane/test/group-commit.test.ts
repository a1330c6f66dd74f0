import { isLeaseError } from '@runt/leases';
import { submitRunRequestSchema, type RunEventInput } from '@runt/protocol';
import { countStatements, type Database } from '@runt/sql';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isRunError } from '../src/runs/run-error.js';
import type { RunLifecycle } from '../src/runs/run-lifecycle.js';
import * as transitions from '../src/runs/transitions.js';
import { migratedDatabase, noRelaySignals, testLifecycle } from './scheduler-fixtures.js';

/**
 * Group commit (issue 9): holders' reports of many runs that arrive together are written in one
 * statement per kind, and each caller still gets its own answer, refusals included.
 */
describe.each(TEST_BACKENDS)('group commit on %s', (backend) => {
  let t: TestDatabase;
  let db: Database;
  let lifecycle: RunLifecycle;
  let statements = 0;
  let schedules = 0;
  // On Postgres a submit's insert commits asynchronously and one more statement waits for its WAL flush.
  const flush = backend === 'postgres' ? 1 : 0;

  beforeAll(async () => {
    t = await migratedDatabase(backend);
    for (const id of ['ws_a', 'ws_b'])
      await t.db.query('insert into workstations (id, display_name) values ($1, $1)', [id]);
    db = countStatements(t.db, (c) => (statements += c.statements));
    // no agent links in this test: nothing to carry
    const signals = noRelaySignals();
    lifecycle = testLifecycle(db, {
      ...signals,
      schedule: (reason) => {
        schedules++;
        signals.schedule(reason);
      },
    });
  });
  afterAll(async () => {
    await t?.dispose();
  });
  beforeEach(() => {
    statements = 0;
    schedules = 0;
  });

  /** `n` runs offered to ws_a and claimed by it. */
  async function claimed(n: number): Promise<Array<{ id: string; token: number; seq: number }>> {
    const out = [];
    for (let i = 0; i < n; i++) {
      const { run } = await transitions.submit(
        t.db,
        submitRunRequestSchema.parse({ runtime: 'fake', command: ['true'] }),
      );
      await transitions.offer(t.db, [{ id: run.id, ws: 'ws_a' }]);
      const c = await lifecycle.claim('ws_a', run.id, 'r1', 60_000);
      out.push({ id: run.id, token: c.fencing_token, seq: c.next_event_seq });
    }
    statements = 0;
    return out;
  }

  /** The error code an answer maps to (a `RunError`'s, or a lease refusal's, both 409 `runner-lease-conflict`). */
  const codeOf = (e: unknown) => (isRunError(e) || isLeaseError(e) ? e.code : String(e));

  const log = (seq: number, data: string, at?: string): RunEventInput => ({
    seq,
    type: 'log',
    payload: { stream: 'stdout', data },
    ...(at ? { at } : {}),
  });

  it('writes concurrent renewals, events, starts and finishes of 20 runs in one statement each', async () => {
    const runs = await claimed(20);

    const renewed = await Promise.all(runs.map((r) => lifecycle.heartbeat('ws_a', r.id, r.token, 60_000)));
    expect(statements).toBe(1);
    for (const a of renewed) expect(a).toEqual({ expires_at: expect.any(String), cancel_requested: false });

    statements = 0;
    const next = await Promise.all(
      runs.map((r) =>
        lifecycle.appendEvents('ws_a', r.id, r.token, [
          log(r.seq, `a ${r.id}\n`),
          log(r.seq + 1, `b ${r.id}\n`),
        ]),
      ),
    );
    expect(statements).toBe(1);
    expect(next).toEqual(runs.map((r) => r.seq + 2));

    statements = 0;
    const started = await Promise.all(
      runs.map((r) => lifecycle.reportStatus('ws_a', r.id, { fencing_token: r.token, status: 'running' })),
    );
    expect(statements).toBe(1);
    expect(started.map((s) => [s.run?.id, s.run?.status, s.run?.lease?.fencing_token])).toEqual(
      runs.map((r) => [r.id, 'running', r.token]),
    );

    statements = 0;
    const finished = await Promise.all(
      runs.map((r, i) =>
        lifecycle.reportStatus('ws_a', r.id, {
          fencing_token: r.token,
          status: i % 2 ? 'completed' : 'failed',
          exit_code: i % 2 ? 0 : 3,
          events: [log(r.seq + 2, `c ${r.id}\n`)],
        }),
      ),
    );
    expect(statements).toBe(1);
    finished.forEach((f, i) => {
      expect(f.run?.id).toBe(runs[i]!.id);
      expect([f.run?.status, f.run?.exit_code, f.run?.lease]).toEqual(
        i % 2 ? ['completed', 0, null] : ['failed', 3, null],
      );
      expect(f.nextEventSeq).toBe(runs[i]!.seq + 4);
    });

    // Each run's own events, in order, then its own terminal status; every lease given up.
    for (const [i, r] of runs.entries()) {
      const ev = await t.db.query<{ seq: number; type: string; payload: { data?: string; status?: string } }>(
        'select seq, type, payload from run_events where run_id = $1 order by seq',
        [r.id],
      );
      expect(ev.rows.map((e) => [e.seq, e.type, e.payload.data ?? e.payload.status])).toEqual([
        [r.seq, 'log', `a ${r.id}\n`],
        [r.seq + 1, 'log', `b ${r.id}\n`],
        [r.seq + 2, 'log', `c ${r.id}\n`],
        [r.seq + 3, 'terminal_status', i % 2 ? 'completed' : 'failed'],
      ]);
    }
    const held = await t.db.query(
      `select 1 from leases where resource = any($1::text[]) and holder is not null`,
      [runs.map((r) => r.id)],
    );
    expect(held.rows).toEqual([]);
  });

  it("answers `answer: 'brief'` reports with the status and next seq only, in one statement, beside whole-run answers", async () => {
    const runs = await claimed(6);
    // All brief: no run in any answer.
    const started = await Promise.all(
      runs.map((r) =>
        lifecycle.reportStatus('ws_a', r.id, { fencing_token: r.token, status: 'running', answer: 'brief' }),
      ),
    );
    expect(statements).toBe(1);
    expect(started).toEqual(runs.map((r) => ({ status: 'running', nextEventSeq: r.seq })));
    // The checked path (a repeated `running`, which the fast statement does not take) too.
    const again = await lifecycle.reportStatus('ws_a', runs[1]!.id, {
      fencing_token: runs[1]!.token,
      status: 'running',
      answer: 'brief',
    });
    expect(again).toEqual({ status: 'running', nextEventSeq: runs[1]!.seq });

    // Mixed: the whole run for those that did not ask for the brief answer, still one statement.
    statements = 0;
    const finished = await Promise.all(
      runs.map((r, i) =>
        lifecycle.reportStatus('ws_a', r.id, {
          fencing_token: r.token,
          status: 'completed',
          exit_code: 0,
          ...(i % 2 ? { answer: 'brief' as const } : {}),
        }),
      ),
    );
    expect(statements).toBe(1);
    finished.forEach((f, i) => {
      expect([f.status, f.nextEventSeq]).toEqual(['completed', runs[i]!.seq + 1]);
      expect(f.run?.id).toBe(runs[i]!.id); // the statement read the rows anyway
    });
  });

  it('fails only the item with a stale fencing token, with the RunError it gets alone', async () => {
    const runs = await claimed(6);
    const stale = runs[2]!;
    // Alone first: the answer a stale heartbeat gets today.
    const alone = await lifecycle
      .heartbeat('ws_a', stale.id, stale.token + 1, 60_000)
      .catch((e: unknown) => e);
    expect(isRunError(alone) && alone.code).toBe('runner-lease-conflict');

    statements = 0;
    const beats = await Promise.allSettled(
      runs.map((r) => lifecycle.heartbeat('ws_a', r.id, r === stale ? r.token + 1 : r.token, 60_000)),
    );
    expect(beats.map((b) => b.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
      'fulfilled',
      'fulfilled',
    ]);
    const refused = (beats[2] as PromiseRejectedResult).reason as Error;
    expect(isRunError(refused) && refused.code).toBe('runner-lease-conflict');
    expect(refused.message).toBe((alone as Error).message);

    // A finish from another workstation in the batch: forbidden for it alone, the rest finish.
    const foreign = runs[4]!;
    const finishAlone = await lifecycle
      .reportStatus('ws_a', stale.id, { fencing_token: stale.token + 7, status: 'completed', exit_code: 0 })
      .catch((e: unknown) => e);
    expect(codeOf(finishAlone)).toBe('runner-lease-conflict');
    const ends = await Promise.allSettled(
      runs.map((r) =>
        lifecycle.reportStatus(r === foreign ? 'ws_b' : 'ws_a', r.id, {
          fencing_token: r === stale ? r.token + 7 : r.token,
          status: 'completed',
          exit_code: 0,
        }),
      ),
    );
    expect(ends.map((e) => e.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
      'rejected',
      'fulfilled',
    ]);
    const refusals = [2, 4].map((i) => (ends[i] as PromiseRejectedResult).reason as Error);
    expect(refusals.map(codeOf)).toEqual(['runner-lease-conflict', 'forbidden']);
    expect(refusals[0]!.message).toBe((finishAlone as Error).message);
    const status = await t.db.query<{ id: string; status: string }>(
      'select id, status from runs where id = any($1::text[])',
      [runs.map((r) => r.id)],
    );
    const byId = new Map(status.rows.map((r) => [r.id, r.status]));
    expect(runs.map((r) => byId.get(r.id))).toEqual([
      'completed',
      'completed',
      'accepted',
      'completed',
      'accepted',
      'completed',
    ]);
  });

  it('writes item by item when the batch statement fails: only the bad item fails, nothing is lost', async () => {
    const runs = await claimed(5);
    const bad = runs[1]!;
    // Valid on the wire (an ISO date-time) but out of the database's range: the statement fails.
    const results = await Promise.allSettled(
      runs.map((r) =>
        lifecycle.appendEvents('ws_a', r.id, r.token, [
          log(r.seq, `x ${r.id}\n`, r === bad ? '0000-01-01T00:00:00Z' : undefined),
        ]),
      ),
    );
    expect(results.map((x) => x.status)).toEqual([
      'fulfilled',
      'rejected',
      'fulfilled',
      'fulfilled',
      'fulfilled',
    ]);
    // The failed statement, then each of the five alone.
    expect(statements).toBe(6);
    const stored = await t.db.query<{ run_id: string; data: string }>(
      `select run_id, payload->>'data' as data from run_events where run_id = any($1::text[]) order by run_id`,
      [runs.map((r) => r.id)],
    );
    expect(new Map(stored.rows.map((e) => [e.run_id, e.data]))).toEqual(
      new Map(runs.filter((r) => r !== bad).map((r) => [r.id, `x ${r.id}\n`])),
    );
    const seqs = await t.db.query<{ id: string; next_event_seq: number }>(
      'select id, next_event_seq from runs where id = any($1::text[])',
      [runs.map((r) => r.id)],
    );
    const next = new Map(seqs.rows.map((r) => [r.id, Number(r.next_event_seq)]));
    expect(runs.map((r) => next.get(r.id))).toEqual(runs.map((r) => (r === bad ? r.seq : r.seq + 1)));
  });

  it('keeps one run’s writes in separate statements, in the order they were made', async () => {
    const [r] = await claimed(1);
    const [a, b] = await Promise.all([
      lifecycle.appendEvents('ws_a', r!.id, r!.token, [log(r!.seq, 'one\n')]),
      lifecycle.appendEvents('ws_a', r!.id, r!.token, [log(r!.seq + 1, 'two\n')]),
    ]);
    expect([a, b]).toEqual([r!.seq + 1, r!.seq + 2]);
    expect(statements).toBe(2);
  });

  it('submits 1,000 runs in one insert statement and asks for one scheduling pass', async () => {
    const inputs = Array.from({ length: 1000 }, (_, i) =>
      submitRunRequestSchema.parse({ runtime: 'fake', command: ['echo', String(i)] }),
    );
    const out = await lifecycle.submitMany(inputs);
    expect(statements).toBe(1 + flush);
    expect(schedules).toBe(1);
    expect(out.map((o) => [o.created, o.run.command[1]])).toEqual(inputs.map((_, i) => [true, String(i)]));

    // With idempotency keys: one transaction (free expired keys, the insert, read the repeats).
    statements = 0;
    schedules = 0;
    const keyed = (k: string) =>
      submitRunRequestSchema.parse({ runtime: 'fake', command: ['k'], idempotency_key: k });
    const first = await lifecycle.submitMany([keyed('gc-1'), keyed('gc-2')]);
    const again = await lifecycle.submitMany([keyed('gc-2'), keyed('gc-1')]);
    expect(again.map((o) => [o.run.id, o.created])).toEqual([
      [first[1]!.run.id, false],
      [first[0]!.run.id, false],
    ]);
    expect(schedules).toBe(1); // nothing new the second time
    // BEGIN, free, insert, COMMIT; then with the read of the repeats (each + the WAL flush on Postgres)
    expect(statements).toBe(4 + 5 + 2 * flush);
  });

  it('writes 50 concurrent single submits in one insert, each answered with its own run', async () => {
    const out = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        lifecycle.submit(submitRunRequestSchema.parse({ runtime: 'fake', command: ['echo', `one-${i}`] })),
      ),
    );
    expect(statements).toBe(1 + flush);
    expect(schedules).toBe(1);
    expect(out.map((o) => [o.created, o.run.status, o.run.command[1]])).toEqual(
      out.map((_, i) => [true, 'queued', `one-${i}`]),
    );
    expect(new Set(out.map((o) => o.run.id)).size).toBe(50);
    // Durable before the answer: every answered run is in the table.
    const stored = await t.db.query<{ n: number }>('select count(*)::int as n from runs where id = any($1)', [
      out.map((o) => o.run.id),
    ]);
    expect(stored.rows[0]!.n).toBe(50);

    // Concurrent repeats of one idempotency key: one run, the others answered with it.
    statements = 0;
    const keyed = await Promise.all(
      Array.from({ length: 5 }, () =>
        lifecycle.submit(
          submitRunRequestSchema.parse({ runtime: 'fake', command: ['k'], idempotency_key: 'gc-concurrent' }),
        ),
      ),
    );
    expect(new Set(keyed.map((o) => o.run.id)).size).toBe(1);
    expect(keyed.filter((o) => o.created)).toHaveLength(1);
  });

  it('never inserts a failed submit batch again (it may have committed): each caller gets the error', async () => {
    // A NUL the JSON edge refuses (400) but the insert reaches here: the statement fails.
    const inputs = ['a', 'b\u0000', 'c'].map((x) =>
      submitRunRequestSchema.parse({ runtime: 'fake', command: ['echo', `nul-${x}`] }),
    );
    const results = await Promise.allSettled(inputs.map((i) => lifecycle.submit(i)));
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(statements).toBe(1);
    const stored = await t.db.query<{ n: number }>(
      `select count(*)::int as n from runs where command->>1 like 'nul-%'`,
    );
    expect(stored.rows[0]!.n).toBe(0);
  });

  it('refuses a submit with secrets alone (no key here): the others of its batch are inserted', async () => {
    const ok = (i: number) =>
      lifecycle.submit(submitRunRequestSchema.parse({ runtime: 'fake', command: ['echo', `s-${i}`] }));
    const secret = lifecycle.submit(
      submitRunRequestSchema.parse({
        runtime: 'fake',
        command: ['true'],
        env: { TOKEN: { value: 'x', secret: true } },
      }),
    );
    const [a, refused, b] = await Promise.allSettled([ok(1), secret, ok(2)]);
    expect(refused).toMatchObject({ status: 'rejected', reason: { code: 'secrets-unavailable' } });
    expect(a).toMatchObject({ status: 'fulfilled', value: { created: true } });
    expect(b).toMatchObject({ status: 'fulfilled', value: { created: true } });
    expect(statements).toBe(1 + flush);
  });
});
