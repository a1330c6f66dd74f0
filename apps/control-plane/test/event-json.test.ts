import { submitRunRequestSchema } from '@runt/protocol';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventStore } from '../src/runs/event-store.js';
import * as transitions from '../src/runs/transitions.js';
import { migratedDatabase } from './scheduler-fixtures.js';

/**
 * Event pages are answered with the JSON the database makes from the stored `jsonb` (issue 9:
 * no re-serialisation of stored payloads); it must say exactly what the parsed events say.
 */
describe.each(TEST_BACKENDS)('events as stored JSON on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase(backend);
  });
  afterAll(async () => t?.dispose());

  it('serialises each event as the parsed event reads, dates with milliseconds in UTC', async () => {
    const { run } = await transitions.submit(
      t.db,
      submitRunRequestSchema.parse({ runtime: 'fake', command: ['true'] }),
    );
    const payloads = [
      { stream: 'stdout', data: 'hi\n' },
      { stream: 'stderr', data: 'quote " backslash \\ tab \t ünïcødé 🎉 \u0001' },
      { nested: { a: [1, 2.5, -0.001, 1e20, true, null], b: {} }, big: 2 ** 60 },
      {},
    ];
    const ats = [
      '2026-11-30T09:00:00.123999+00:00',
      '2026-01-02T03:04:05+02:00',
      '1999-12-31T23:59:59.999999Z',
      '2026-11-30T09:00:00.0005Z',
    ];
    for (const [i, payload] of payloads.entries()) {
      await t.db.query(
        `insert into run_events (run_id, seq, type, payload, at) values ($1, $2, 'log', $3::jsonb, $4::timestamptz)`,
        [run.id, i + 1, JSON.stringify(payload), ats[i]],
      );
    }
    const events = new EventStore(t.db);
    const parsed = await events.list(run.id, 0, 100);
    const raw = await events.listJson(run.id, 0, 100);
    expect(raw!.status).toBe(parsed!.status);
    expect(raw!.events.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(raw!.events.map((e) => JSON.parse(e.json) as unknown)).toEqual(parsed!.events);
    // after_seq and limit as in list
    const page = await events.listJson(run.id, 1, 2);
    expect(page!.events.map((e) => e.seq)).toEqual([2, 3]);
    expect(await events.listJson('run_nope', 0, 10)).toBeUndefined();
    // Past the last event: the run's status and no events (one statement reads both).
    expect(await events.listJson(run.id, 4, 10)).toEqual({ events: [], status: 'queued' });
  });
});
