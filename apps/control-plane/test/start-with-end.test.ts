import { submitRunRequestSchema } from '@runt/protocol';
import { countStatements, type Database } from '@runt/sql';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunLifecycle } from '../src/runs/run-lifecycle.js';
import * as transitions from '../src/runs/transitions.js';
import { migratedDatabase, testLifecycle } from './scheduler-fixtures.js';

/**
 * A run that ends before its agent reported it running (issue 9): the terminal report carries
 * `started_ms_ago`, and the run's start is recorded with its end, in the one fenced statement
 * of a finish (or on the checked path, before a retry).
 */
describe.each(TEST_BACKENDS)('a start reported with the end on %s', (backend) => {
  let t: TestDatabase;
  let db: Database;
  let lifecycle: RunLifecycle;
  let statements = 0;

  beforeAll(async () => {
    t = await migratedDatabase(backend);
    await t.db.query(`insert into workstations (id, display_name) values ('ws_a', 'ws_a')`);
    db = countStatements(t.db, (c) => (statements += c.statements));
    lifecycle = testLifecycle(db);
  });
  afterAll(async () => {
    await t?.dispose();
  });
  beforeEach(() => {
    statements = 0;
  });

  /** A run offered to ws_a and claimed by it, accepted 10 s ago. */
  async function claimed(extra: Record<string, unknown> = {}): Promise<{ id: string; token: number }> {
    const { run } = await transitions.submit(
      t.db,
      submitRunRequestSchema.parse({ runtime: 'fake', command: ['true'], ...extra }),
    );
    await transitions.offer(t.db, [{ id: run.id, ws: 'ws_a' }]);
    const c = await lifecycle.claim('ws_a', run.id, 'r1', 60_000);
    await t.db.query(`update runs set accepted_at = now() - interval '10 seconds' where id = $1`, [run.id]);
    statements = 0;
    return { id: run.id, token: c.fencing_token };
  }

  const times = async (id: string) =>
    (
      await t.db.query<{ status: string; started_ms: number | null; to_end_ms: number | null }>(
        `select status, extract(epoch from started_at - accepted_at) * 1000 as started_ms,
                extract(epoch from finished_at - started_at) * 1000 as to_end_ms
           from runs where id = $1`,
        [id],
      )
    ).rows[0]!;

  it('records the start of an accepted run with its end, in one statement', async () => {
    const r = await claimed();
    const a = await lifecycle.reportStatus('ws_a', r.id, {
      fencing_token: r.token,
      status: 'completed',
      exit_code: 0,
      started_ms_ago: 1_500,
      answer: 'brief',
    });
    expect(a.status).toBe('completed');
    expect(statements).toBe(1);
    const x = await times(r.id);
    expect(Number(x.to_end_ms)).toBeCloseTo(1_500, 0);
  });

  it('never puts the start before the acceptance, nor moves a start already reported', async () => {
    const early = await claimed();
    await lifecycle.reportStatus('ws_a', early.id, {
      fencing_token: early.token,
      status: 'completed',
      exit_code: 0,
      started_ms_ago: 60_000,
    });
    const e = await times(early.id);
    expect(e.started_ms).not.toBeNull();
    expect(Number(e.started_ms)).toBe(0);

    const ran = await claimed();
    await lifecycle.reportStatus('ws_a', ran.id, { fencing_token: ran.token, status: 'running' });
    await t.db.query(`update runs set started_at = now() - interval '5 seconds' where id = $1`, [ran.id]);
    await lifecycle.reportStatus('ws_a', ran.id, {
      fencing_token: ran.token,
      status: 'completed',
      exit_code: 0,
      started_ms_ago: 1_000,
    });
    expect(Number((await times(ran.id)).to_end_ms)).toBeGreaterThanOrEqual(5_000);
  });

  it('leaves the start empty for a terminal report without it (a run that never started)', async () => {
    const r = await claimed();
    await lifecycle.reportStatus('ws_a', r.id, {
      fencing_token: r.token,
      status: 'failed',
      failure_kind: 'image-unavailable',
      failure_message: 'no such image',
    });
    expect((await times(r.id)).started_ms).toBeNull();
  });

  it('keeps the start in the attempt a retry policy sends back to the queue (the checked path)', async () => {
    const r = await claimed({ retry: { on: ['nonzero-exit'], max_attempts: 2 } });
    await lifecycle.reportStatus('ws_a', r.id, {
      fencing_token: r.token,
      status: 'failed',
      exit_code: 3,
      started_ms_ago: 2_000,
    });
    const attempt = (
      await t.db.query<{ status: string; ran_ms: number }>(
        `select status, extract(epoch from finished_at - started_at) * 1000 as ran_ms from run_attempts where run_id = $1`,
        [r.id],
      )
    ).rows;
    expect(attempt).toHaveLength(1);
    expect(Number(attempt[0]!.ran_ms)).toBeGreaterThanOrEqual(2_000);
    expect((await times(r.id)).status).toBe('queued');
  });
});
