import { submitRunRequestSchema } from '@runt/protocol';
import type { Database } from '@runt/sql';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventWaiters } from '../src/event-waiters.js';
import type { LinkMessage } from '../src/link/link-relay.js';
import { createRunSignals } from '../src/runs/run-signals.js';
import * as transitions from '../src/runs/transitions.js';
import { addWorkstation, migratedDatabase, newScheduler, testLifecycle } from './scheduler-fixtures.js';

/**
 * The writes that ride a pass (withNextPass: a finish batch) are always answered: the finish
 * batcher keeps one write in flight, so one left pending would hold every finish on the replica.
 * And when the pass's WAL flush failed (Postgres), the finish written again alone answers from
 * durable rows only.
 */
describe.each(TEST_BACKENDS)('writes riding a pass, on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase(backend);
  });
  afterAll(async () => t?.dispose());

  const submit = async (runtime: string) =>
    (await transitions.submit(t.db, submitRunRequestSchema.parse({ runtime, command: ['x'] }))).run;

  it('are answered when sending a plain offer throws after the commit', async () => {
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
      // Never left pending: the failed send is the offer's alone (its run waits for the sweeper
      // or the next pass), and the write committed with the pass, so it is answered once durable.
      expect(outcome).toBe('answered');
    } finally {
      await s.stop();
    }
  });

  it('are answered alone after a failed flush (Postgres) only once the pass committed durably', async () => {
    await addWorkstation(t.db, 'ws_flush', 'flush-rt', 2);
    // The pass's flush fails (both tries); the lifecycle's db records its flushes.
    const passDb: Database = {
      ...t.db,
      query: async (text, params) => {
        if (text.includes("'runt-flush'")) throw new Error('flush lost');
        return t.db.query(text, params);
      },
    };
    const lifecycleFlushes: string[] = [];
    const lifecycleDb: Database = {
      ...t.db,
      query: async (text, params) => {
        if (text.includes("'runt-flush'")) lifecycleFlushes.push(text);
        return t.db.query(text, params);
      },
    };
    const sent: LinkMessage[] = [];
    const relay: Parameters<typeof newScheduler>[1] = {
      send(workstationId, message) {
        sent.push({ workstationId, message });
      },
      relay: async (_tx, items) => items,
      capacityFreed() {},
    };
    const s = newScheduler(passDb, relay, {
      claimers: () => ({ holder: 'ws_flush/r1', leaseMs: 60_000 }),
    });
    const signals = createRunSignals({ waiters: new EventWaiters(), relay });
    signals.attachScheduler(s);
    const lifecycle = testLifecycle(lifecycleDb, signals);
    try {
      const a = await submit('flush-rt');
      // Claims `a`; on Postgres its flush fails, and the claim, read back as durable, is sent.
      await s.pass();
      expect(sent.length).toBe(1);
      const { fencing_token } = (
        await t.db.query<{ fencing_token: number }>(`select fencing_token from runs where id = $1`, [a.id])
      ).rows[0]!;
      const err = await lifecycle
        .reportStatus('ws_flush', a.id, {
          fencing_token: Number(fencing_token),
          status: 'completed',
          exit_code: 0,
        })
        .then(
          () => undefined,
          (e: unknown) => e as { code?: string },
        );
      if (backend === 'postgres') {
        // The finish rode a pass whose COMMIT applied but whose flush failed: written again
        // alone it is refused (the run ended), an answer the agent takes as final — so the
        // lifecycle flushed first.
        expect(err?.code).toBe('run-not-active');
        expect(lifecycleFlushes.length).toBeGreaterThanOrEqual(1);
      } else {
        // PGlite commits synchronously: no flush to fail, the ridden finish is answered.
        expect(err).toBeUndefined();
        expect(lifecycleFlushes).toEqual([]);
      }
    } finally {
      await s.stop();
    }
  });
});
