import { submitRunRequestSchema } from '@runt/protocol';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as transitions from '../src/runs/transitions.js';
import { addWorkstation, migratedDatabase, newScheduler } from './scheduler-fixtures.js';

/**
 * The writes that ride a pass (withNextPass: a finish batch) are always answered: the finish
 * batcher keeps one write in flight, so one left pending would hold every finish on the replica.
 */
describe.each(TEST_BACKENDS)('writes riding a pass, on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase(backend);
  });
  afterAll(async () => t?.dispose());

  const submit = async (runtime: string) =>
    (await transitions.submit(t.db, submitRunRequestSchema.parse({ runtime, command: ['x'] }))).run;

  it('are settled when sending a plain offer throws after the commit', async () => {
    await addWorkstation(t.db, 'ws_throw', 'throw-rt', 1);
    const relay: Parameters<typeof newScheduler>[1] = {
      send(_ws, message) {
        if (message.type === 'offer') throw new Error('link broke');
      },
      relay: async (_tx, items) => items,
      capacityFreed() {},
    };
    const s = newScheduler(t.db, relay);
    try {
      await submit('throw-rt');
      const rode = s.withNextPass({ text: 'select 1 as one' })!;
      const outcome = await Promise.race([
        rode.then(
          () => 'answered',
          () => 'rejected',
        ),
        new Promise((r) => setTimeout(() => r('pending'), 5_000)),
      ]);
      // Rejected: its caller writes it alone (the pass failed after its COMMIT, before `deliver`).
      expect(outcome).toBe('rejected');
    } finally {
      await s.stop();
    }
  });
});
