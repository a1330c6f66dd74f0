import { submitRunRequestSchema } from '@runt/protocol';
import type { Database, Queryable, Statement } from '@runt/sql';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as transitions from '../src/runs/transitions.js';
import { addWorkstation, migratedDatabase, newScheduler } from './scheduler-fixtures.js';

// Issue 9: in a 10,000-run drain a finish's kick waited a median 13.7 ms for the pass in flight
// to end before the pass that places into its slot began. On Postgres the next pass now starts
// at once: its BEGIN, lock and page wait in the database on the scheduler's lock and read right
// after the first pass's COMMIT, as a second replica's would. PGlite (one connection) keeps one.
describe.each(TEST_BACKENDS)('a kick during a scheduling pass, on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase(backend);
  });
  afterAll(async () => t?.dispose());

  it(
    backend === 'postgres'
      ? 'starts the next pass before the first commits, and the two place each run once within the slots'
      : 'waits for the pass in flight, and the two place each run once within the slots',
    async () => {
      await addWorkstation(t.db, 'ws_ov', 'ov', 2);
      const submit = () =>
        transitions.submit(t.db, submitRunRequestSchema.parse({ runtime: 'ov', command: ['x'] }));
      await submit();
      await submit();
      await submit();
      // The first pass stops after its page, before it places (a gate), while a second kick comes.
      let open!: () => void;
      const gate = new Promise<void>((r) => (open = r));
      let transactions = 0;
      let pagesAsked = 0;
      const isPage = (text: string) => text.includes('for update skip locked');
      const db: Database = {
        ...t.db,
        transaction: <T>(fn: (tx: Queryable) => Promise<T>) => {
          const n = ++transactions;
          return t.db.transaction((tx) =>
            fn({
              ...tx,
              query: async <R>(text: string, params?: unknown[]) => {
                if (isPage(text)) pagesAsked++;
                else if (n === 1) await gate;
                return tx.query<R>(text, params);
              },
              ...(tx.pipeline && {
                pipeline: <R>(statements: Statement[]) => {
                  if (isPage(statements.at(-1)!.text)) pagesAsked++;
                  return tx.pipeline!<R>(statements);
                },
              }),
            }),
          );
        },
      };
      const scheduler = newScheduler(db);
      expect(scheduler.kick()).toBe(true);
      await until(() => pagesAsked === 1);
      expect(scheduler.kick()).toBe(true); // e.g. a finish while the first pass places
      await new Promise((r) => setTimeout(r, 50));
      expect(pagesAsked).toBe(backend === 'postgres' ? 2 : 1);
      open();
      await scheduler.idle();
      // A second page read before the first pass's COMMIT would have seen both slots free and
      // offered the third run too.
      const r = await t.db.query<{ status: string; n: number }>(
        `select status, count(*)::int as n from runs where runtime = 'ov' group by status order by status`,
      );
      expect(r.rows).toEqual([
        { status: 'offered', n: 2 },
        { status: 'queued', n: 1 },
      ]);
      await scheduler.stop();
    },
  );
});

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
}
