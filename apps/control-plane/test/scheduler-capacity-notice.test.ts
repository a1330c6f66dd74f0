import { submitRunRequestSchema } from '@runt/protocol';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventWaiters } from '../src/event-waiters.js';
import { createRunSignals } from '../src/runs/run-signals.js';
import { Scheduler } from '../src/runs/scheduler.js';
import * as transitions from '../src/runs/transitions.js';
import { addWorkstation, migratedDatabase } from './scheduler-fixtures.js';

// Issue 9: a finish freed capacity, and the control plane told the other replicas with a
// `runt_schedule` NOTIFY of its own (a statement per finish batch, 0.04–0.06 round trips per run
// in a drain) while the pass it asked for ran anyway. The notice now rides with that pass's
// COMMIT, and only when the pass leaves a slot free: a pass that fills the fleet leaves the
// other replicas right to skip their submits.
describe.each(TEST_BACKENDS)('capacity freed, told by the pass it starts, on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase(backend);
  });
  afterAll(async () => t?.dispose());

  /** A scheduler whose relay records the notices: `alone` (a statement of their own) and `withPass`. */
  function scheduled() {
    const notices = { alone: 0, withPass: 0 };
    const signals = createRunSignals({
      waiters: new EventWaiters(),
      relay: {
        send() {},
        relay: async (_tx, items, capacityFreed) => {
          if (capacityFreed) notices.withPass++;
          return items;
        },
        capacityFreed: () => void notices.alone++,
      },
    });
    const scheduler = new Scheduler({
      db: t.db,
      logger: pino({ level: 'silent' }),
      signals,
      replicaId: 'cp',
      tickMs: 60_000,
    });
    signals.attachScheduler(scheduler);
    return { notices, signals, scheduler };
  }

  const submit = (runtime: string) =>
    transitions.submit(t.db, submitRunRequestSchema.parse({ runtime, command: ['x'] }));
  const settle = (s: Scheduler) => s.idle(); // the kick's pass, and any one more it asked for

  it('tells the others on the COMMIT of a pass that leaves a slot free, with no statement of its own', async () => {
    await addWorkstation(t.db, 'ws_free', 'free-rt', 3);
    await submit('free-rt');
    const { notices, signals, scheduler } = scheduled();
    signals.schedule(); // a finish freed a slot
    await settle(scheduler);
    expect(await t.db.query(`select status from runs where runtime = 'free-rt'`)).toMatchObject({
      rows: [{ status: 'offered' }],
    });
    expect(notices).toEqual({ alone: 0, withPass: 1 });
    await scheduler.stop();
  });

  it('tells nobody when the pass filled the fleet again', async () => {
    await t.db.query(`update workstations set listening = false`);
    await addWorkstation(t.db, 'ws_full', 'full-rt', 1);
    await submit('full-rt');
    await submit('full-rt');
    const { notices, signals, scheduler } = scheduled();
    signals.schedule();
    await settle(scheduler);
    const r = await t.db.query<{ status: string }>(
      `select status from runs where runtime = 'full-rt' order by position`,
    );
    expect(r.rows.map((x) => x.status)).toEqual(['offered', 'queued']);
    expect(notices).toEqual({ alone: 0, withPass: 0 });
    await scheduler.stop();
  });

  it('tells them alone when no pass will run (the scheduler stopped)', async () => {
    const { notices, signals, scheduler } = scheduled();
    await scheduler.stop();
    signals.schedule();
    expect(notices).toEqual({ alone: 1, withPass: 0 });
  });
});
