import { submitRunRequestSchema } from '@runt/protocol';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventWaiters } from '../src/event-waiters.js';
import { createRunSignals } from '../src/runs/run-signals.js';
import * as transitions from '../src/runs/transitions.js';
import { addWorkstation, migratedDatabase, newScheduler, testLifecycle } from './scheduler-fixtures.js';

// Issue 9: in a drain a slot's cycle was offer → report (13 ms) → finish committed (10 ms) →
// the pass in flight ends and the next one starts (14 ms) → the pass (15 ms). A finish batch now
// rides the next pass: the pass's first transaction writes it, then reads its page, so the
// slot it freed is placed in the same commit, and the finish's answer comes after that commit.
describe.each(TEST_BACKENDS)('a finish refills the slot it freed, on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase(backend);
  });
  afterAll(async () => t?.dispose());

  function attached() {
    const signals = createRunSignals({
      waiters: new EventWaiters(),
      relay: { send() {}, relay: async (_tx, items) => items, capacityFreed() {} },
    });
    const scheduler = newScheduler(t.db);
    signals.attachScheduler(scheduler);
    return { scheduler, lifecycle: testLifecycle(t.db, signals) };
  }
  const submit = async (runtime: string) =>
    (await transitions.submit(t.db, submitRunRequestSchema.parse({ runtime, command: ['x'] }))).run;
  const row = async (id: string) =>
    (
      await t.db.query<{
        status: string;
        workstation_id: string | null;
        at: string | null;
        fin: string | null;
      }>(
        `select status, workstation_id, offered_at::text as at, finished_at::text as fin from runs where id = $1`,
        [id],
      )
    ).rows[0]!;

  it('offers the next queued run in the finish’s own transaction, before the finish is answered', async () => {
    await addWorkstation(t.db, 'ws_one', 'one-rt', 1);
    const { scheduler, lifecycle } = attached();
    const first = await submit('one-rt');
    expect((await scheduler.pass()).map((r) => r.id)).toEqual([first.id]);
    const next = await submit('one-rt'); // the only slot is taken: it waits
    expect((await scheduler.pass()).map((r) => r.id)).toEqual([]);
    const c = await lifecycle.claim('ws_one', first.id, 'r1', 60_000);
    const answer = await lifecycle.reportStatus('ws_one', first.id, {
      fencing_token: c.fencing_token,
      status: 'completed',
      exit_code: 0,
      started_ms_ago: 5,
    });
    expect(answer.status).toBe('completed');
    // Answered after the commit that placed the next run on the freed slot: one transaction,
    // one `now()` for both.
    const done = await row(first.id);
    const placed = await row(next.id);
    expect(placed).toMatchObject({ status: 'offered', workstation_id: 'ws_one' });
    expect(placed.at).toBe(done.fin);
    await scheduler.stop();
  });

  it('writes the finish alone, and asks for a pass, when no scheduler runs', async () => {
    await addWorkstation(t.db, 'ws_two', 'two-rt', 1);
    const { scheduler, lifecycle } = attached();
    const first = await submit('two-rt');
    expect((await scheduler.pass()).map((r) => r.id)).toEqual([first.id]);
    const c = await lifecycle.claim('ws_two', first.id, 'r1', 60_000);
    await scheduler.stop();
    const answer = await lifecycle.reportStatus('ws_two', first.id, {
      fencing_token: c.fencing_token,
      status: 'failed',
      exit_code: 1,
    });
    expect(answer.status).toBe('failed');
    expect(await row(first.id)).toMatchObject({ status: 'failed' });
  });
});
