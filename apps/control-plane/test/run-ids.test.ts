import { TEST_BACKENDS } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newRunId } from '../src/runs/run-id.js';
import { startHarness, type Harness } from './harness.js';

const UUID_V7 = /^run_[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * Run ids in time order (issue 9): a run's id is a UUID of version 7, so ids made later sort
 * later and every key of a run (`runs`' primary key, its lease's, its events') is added at the
 * right edge of its index, not on a random leaf (docs/benchmarks.md, _Run ids in time order_).
 */
describe('newRunId', () => {
  it('makes UUIDv7 ids that sort in the order they were made, 4,096+ in one millisecond too', () => {
    const ids = Array.from({ length: 10_000 }, () => newRunId());
    for (const id of ids) expect(id).toMatch(UUID_V7);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    // the leading 48 bits are the millisecond it was made (or a later one it borrowed)
    const ms = parseInt(ids[0]!.slice(4, 12) + ids[0]!.slice(13, 17), 16);
    expect(Math.abs(ms - Date.now())).toBeLessThan(60_000);
  });
});

describe.each(TEST_BACKENDS)('run ids on %s', (backend) => {
  let h: Harness;
  // No agent is linked: the runs stay queued.
  beforeAll(async () => {
    h = await startHarness(backend, {}, { schedulerTickMs: 60_000 });
  });
  afterAll(async () => h?.close());

  it('sort in submit order, single submits and batches alike, as the queue does', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const one = await h.api('/api/runs', {
        token: h.adminToken,
        body: { runtime: 'fake', command: ['echo', String(i)] },
      });
      expect(one.status).toBe(201);
      ids.push(one.json.run.id as string);
      const batch = await h.api('/api/runs/batch', {
        token: h.adminToken,
        body: {
          runs: Array.from({ length: 500 }, (_, n) => ({ runtime: 'fake', command: ['echo', String(n)] })),
        },
      });
      expect(batch.status).toBe(201);
      ids.push(...(batch.json.runs as Array<{ run: { id: string } }>).map((o) => o.run.id));
    }
    for (const id of ids) expect(id).toMatch(UUID_V7);
    expect([...ids].sort()).toEqual(ids);
    // the queue's order (position) is the ids' order
    const byPosition = await h.cp.db.query<{ id: string }>('select id from runs order by position');
    expect(byPosition.rows.map((r) => r.id)).toEqual(ids);
  });
});
