import { submitRunRequestSchema, type RunEventInput } from '@runt/protocol';
import { type Queryable } from '@runt/sql';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunLifecycle } from '../src/runs/run-lifecycle.js';
import * as transitions from '../src/runs/transitions.js';
import { migratedDatabase, testLifecycle } from './scheduler-fixtures.js';

/**
 * A holder's events on the fast statements (append, start, finish) go in with a plain insert
 * (issue 9): those statements take a batch only when it continues exactly at the run's stored
 * next seq, so no seq it writes can be taken, and `on conflict do nothing` (a speculative
 * insert: one more primary-key probe and a confirm record per event) had nothing to do there.
 * A resend, wholly or partly stored, takes the checked path, which still drops what is stored.
 */
describe.each(TEST_BACKENDS)('events continuing at the next seq on %s', (backend) => {
  let t: TestDatabase;
  let lifecycle: RunLifecycle;

  beforeAll(async () => {
    t = await migratedDatabase(backend);
    await t.db.query(`insert into workstations (id, display_name) values ('ws_a', 'ws_a')`);
    lifecycle = testLifecycle(t.db);
  });
  afterAll(async () => {
    await t?.dispose();
  });

  async function claimed(): Promise<{ id: string; token: number; seq: number }> {
    const { run } = await transitions.submit(
      t.db,
      submitRunRequestSchema.parse({ runtime: 'fake', command: ['true'] }),
    );
    await transitions.offer(t.db, [{ id: run.id, ws: 'ws_a' }]);
    const c = await lifecycle.claim('ws_a', run.id, 'r1', 60_000);
    return { id: run.id, token: c.fencing_token, seq: c.next_event_seq };
  }

  const log = (seq: number): RunEventInput => ({
    seq,
    type: 'log',
    payload: { stream: 'stdout', data: `l${seq}\n` },
  });
  const batch = (first: number, last: number): transitions.EventBatch => ({
    first,
    last,
    json: JSON.stringify(
      Array.from({ length: last - first + 1 }, (_, i) => ({ ...log(first + i), at: null })),
    ),
  });
  const events = async (id: string) =>
    (
      await t.db.query<{ seq: number | string; type: string }>(
        'select seq, type from run_events where run_id = $1 order by seq',
        [id],
      )
    ).rows.map((e) => [Number(e.seq), e.type]);

  /** Runs `fn` on a queryable that keeps every statement it sends. */
  async function recorded<T>(
    fn: (q: Queryable) => Promise<T>,
  ): Promise<{ out: T; sent: Array<{ text: string; params: unknown[] }> }> {
    const sent: Array<{ text: string; params: unknown[] }> = [];
    const q: Queryable = {
      query: (text, params) => {
        sent.push({ text, params: params ?? [] });
        return t.db.query(text, params);
      },
    };
    return { out: await fn(q), sent };
  }

  const planOf = async (s: { text: string; params: unknown[] }) =>
    (await t.db.query<{ 'QUERY PLAN': string }>(`explain (costs off) ${s.text}`, s.params)).rows
      .map((r) => r['QUERY PLAN'])
      .join('\n');

  it('writes the events of an append, a start and a finish with a plain insert (no conflict resolution in the plan)', async () => {
    const r = await claimed();
    const w = { runId: r.id, workstationId: 'ws_a', token: r.token };
    const append = await recorded((q) =>
      transitions.reportEventsMany(q, [{ ...w, batch: batch(r.seq, r.seq + 1) }]),
    );
    expect(append.out).toEqual([r.seq + 2]);
    const start = await recorded((q) =>
      transitions.startMany(q, [{ ...w, batch: batch(r.seq + 2, r.seq + 2) }]),
    );
    expect(start.out[0]).toMatchObject({ status: 'running', nextEventSeq: r.seq + 3 });
    const finish = await recorded((q) =>
      transitions.finishMany(q, [
        { ...w, batch: batch(r.seq + 3, r.seq + 3), outcome: { status: 'completed', exitCode: 0 } },
      ]),
    );
    expect(finish.out[0]).toMatchObject({ status: 'completed', nextEventSeq: r.seq + 5 });
    expect(await events(r.id)).toEqual([
      [r.seq, 'log'],
      [r.seq + 1, 'log'],
      [r.seq + 2, 'log'],
      [r.seq + 3, 'log'],
      [r.seq + 4, 'terminal_status'],
    ]);
    for (const s of [...append.sent, ...start.sent, ...finish.sent]) {
      expect(s.text).toMatch(/insert into run_events/);
      const plan = await planOf(s);
      expect(plan).toMatch(/Insert on run_events/);
      expect(plan).not.toMatch(/Conflict/);
    }
  });

  it('leaves a resend to the checked path: the fast statements write nothing, the stored events are dropped, the new ones kept', async () => {
    const r = await claimed();
    const w = { runId: r.id, workstationId: 'ws_a', token: r.token };
    expect(await transitions.reportEventsMany(t.db, [{ ...w, batch: batch(r.seq, r.seq + 1) }])).toEqual([
      r.seq + 2,
    ]);
    // Partly stored (r.seq, r.seq + 1) and wholly stored: no row from any fast statement.
    expect(await transitions.reportEventsMany(t.db, [{ ...w, batch: batch(r.seq, r.seq + 2) }])).toEqual([
      undefined,
    ]);
    expect(await transitions.startMany(t.db, [{ ...w, batch: batch(r.seq, r.seq + 1) }])).toEqual([
      undefined,
    ]);
    expect(
      await transitions.finishMany(t.db, [
        { ...w, batch: batch(r.seq + 1, r.seq + 2), outcome: { status: 'completed', exitCode: 0 } },
      ]),
    ).toEqual([undefined]);
    expect(await events(r.id)).toEqual([
      [r.seq, 'log'],
      [r.seq + 1, 'log'],
    ]);
    // The lifecycle's answer is the same as before: resent events dropped, the new one stored.
    const done = await lifecycle.reportStatus('ws_a', r.id, {
      fencing_token: r.token,
      status: 'completed',
      exit_code: 0,
      events: [log(r.seq), log(r.seq + 1), log(r.seq + 2)],
    });
    expect([done.status, done.nextEventSeq]).toEqual(['completed', r.seq + 4]);
    expect(await events(r.id)).toEqual([
      [r.seq, 'log'],
      [r.seq + 1, 'log'],
      [r.seq + 2, 'log'],
      [r.seq + 3, 'terminal_status'],
    ]);
  });
});
