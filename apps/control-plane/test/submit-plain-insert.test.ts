import { submitRunRequestSchema } from '@runt/protocol';
import { type Database, type Queryable } from '@runt/sql';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as transitions from '../src/runs/transitions.js';
import { migratedDatabase } from './scheduler-fixtures.js';

/**
 * A submit without idempotency keys is a plain insert (issue 9): the only arbiter of its
 * `on conflict` is the partial unique index of keyed runs, which a keyless run never enters,
 * so the clause only made each run a speculative insert. Keyed batches keep it.
 */
describe.each(TEST_BACKENDS)('submits without idempotency keys on %s', (backend) => {
  let t: TestDatabase;
  let sent: Array<{ text: string; params: unknown[] }> = [];
  let db: Database;

  beforeAll(async () => {
    t = await migratedDatabase(backend);
    // The same database, keeping every statement sent (in a transaction too).
    const keep =
      (q: Queryable): Queryable['query'] =>
      (text, params) => {
        sent.push({ text, params: params ?? [] });
        return q.query(text, params);
      };
    db = new Proxy(t.db, {
      get(target, p) {
        if (p === 'query') return keep(target);
        if (p === 'transaction')
          return <T>(fn: (tx: Queryable) => Promise<T>) =>
            target.transaction((tx) => fn({ ...tx, query: keep(tx) }));
        const v: unknown = Reflect.get(target, p);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  });
  afterAll(async () => {
    await t?.dispose();
  });

  const input = (key?: string) =>
    submitRunRequestSchema.parse({
      runtime: 'fake',
      command: ['true'],
      ...(key ? { idempotency_key: key } : {}),
    });
  const insertPlan = async () => {
    const s = sent.find((x) => /^insert into runs/.test(x.text));
    expect(s).toBeDefined();
    return (await t.db.query<{ 'QUERY PLAN': string }>(`explain (costs off) ${s!.text}`, s!.params)).rows
      .map((r) => r['QUERY PLAN'])
      .join('\n');
  };

  it('inserts a keyless batch with no conflict resolution, in the order given', async () => {
    sent = [];
    const out = await transitions.submitMany(db, [input(), input(), input()]);
    expect(out.map((o) => o.created)).toEqual([true, true, true]);
    const ids = out.map((o) => o.run.id);
    const queue = await t.db.query<{ id: string }>(
      'select id from runs where id = any($1::text[]) order by position',
      [ids],
    );
    expect(queue.rows.map((r) => r.id)).toEqual(ids);
    const plan = await insertPlan();
    expect(plan).toMatch(/Insert on runs/);
    expect(plan).not.toMatch(/Conflict/);
  });

  it('keeps conflict resolution for a batch with a key: a repeated key gets the run it named', async () => {
    sent = [];
    const [first] = await transitions.submitMany(db, [input('k-plain-1')]);
    expect(await insertPlan()).toMatch(/Conflict Resolution: NOTHING/);
    const again = await transitions.submitMany(db, [input(), input('k-plain-1')]);
    expect(again.map((o) => o.created)).toEqual([true, false]);
    expect(again[1]!.run.id).toBe(first!.run.id);
  });
});
