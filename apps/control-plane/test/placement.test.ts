import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CANDIDATE_ORDER_SQL,
  FITS_SQL,
  PLACEABLE_SQL,
  PREFERENCE_SQL,
  SLOTS_SQL,
  USED_SQL,
  pick,
  toSlot,
  type Candidate,
} from '../src/runs/placement.js';
import type { RunRow } from '../src/runs/run-row.js';
import { addWorkstation, migratedDatabase, newScheduler } from './scheduler-fixtures.js';

/**
 * The placement rules have two forms in one home (src/runs/placement.ts): the pass's `pick` in
 * memory, and the SQL a submit places its own run with. On the same fleets they must choose the
 * same workstation for every run.
 */
describe.each(TEST_BACKENDS)('the placement rules, on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase(backend);
  });
  afterAll(async () => t?.dispose());

  it('choose the same workstation in SQL as pick does in memory', async () => {
    // A small seeded generator: the same fleets every run.
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const runtimes = ['a', 'b'];
    const labelSets = [{}, { gpu: 'yes' }, { gpu: 'no' }, { gpu: 'yes', zone: 'x' }];
    let agreed = 0;
    for (let fleet = 0; fleet < 4; fleet++) {
      await t.db.query(`delete from runs`);
      await t.db.query(`delete from credentials`);
      await t.db.query(`delete from workstations`);
      for (let i = 0; i < 6; i++) {
        const id = `ws_${fleet}_${i}`;
        await addWorkstation(t.db, id, runtimes[rnd(2)]!, 1 + rnd(4));
        await t.db.query(
          `update workstations set labels = $2::jsonb, memory_bytes = $3, max_runs = $4, prefetch = $5 where id = $1`,
          [
            id,
            JSON.stringify(labelSets[rnd(4)]),
            rnd(2) ? 1000 : null,
            rnd(3) ? null : 1 + rnd(5),
            rnd(3) ? 0 : 1 + rnd(2),
          ],
        );
        for (let u = rnd(4); u > 0; u--)
          await t.db.query(
            `insert into runs (id, status, runtime, workstation_id, cpus, memory_bytes) values ($1, 'offered', 'a', $2, $3, $4)`,
            [`used_${id}_${u}`, id, rnd(2) ? 1 : null, rnd(2) ? 300 : null],
          );
      }
      const cands = (
        await t.db.query<Candidate>(
          `select w.id, w.cpu_count, w.memory_bytes, ${SLOTS_SQL} as slots, w.prefetch, w.runtimes, w.labels,
                  u.used_runs, u.used_cpus, u.used_memory
             from workstations w ${USED_SQL} where ${PLACEABLE_SQL} order by ${CANDIDATE_ORDER_SQL}`,
        )
      ).rows;
      for (let r = 0; r < 30; r++) {
        const run = {
          runtime: runtimes[rnd(2)]!,
          placement_workstation_id: rnd(5) ? null : `ws_${fleet}_${rnd(6)}`,
          placement_labels: labelSets[rnd(4)]!,
          cpus: rnd(2) ? null : 1 + rnd(3),
          memory_bytes: rnd(2) ? null : 200 * (1 + rnd(4)),
        };
        const inSql = await t.db.query<{ id: string }>(
          `with x as (select $1::text as runtime, $2::text as placement_workstation_id, $3::jsonb as placement_labels,
                             $4::float8 as cpus, $5::bigint as memory_bytes)
           select w.id from x, workstations w ${USED_SQL} where ${PLACEABLE_SQL} and ${FITS_SQL}
            order by ${PREFERENCE_SQL} limit 1`,
          [
            run.runtime,
            run.placement_workstation_id,
            JSON.stringify(run.placement_labels),
            run.cpus,
            run.memory_bytes,
          ],
        );
        const inMemory = pick(cands.map(toSlot), run as unknown as RunRow);
        expect(inMemory?.id, JSON.stringify(run)).toBe(inSql.rows[0]?.id);
        if (inMemory) agreed++;
      }
    }
    expect(agreed).toBeGreaterThan(20); // most runs fit somewhere: the cases test a choice
  });

  // A run taken ahead (prefetch) waits on its agent for one of its slots: counted as free room
  // alone, a busy workstation with a long prefetch queue outranked an idle one without (1 slot +
  // 10 ahead, 1 busy: 10 free, against the idle one's 1), and the run waited while a slot idled.
  it('prefers a free slot to prefetch room, in the pass and in a submit', async () => {
    await t.db.query(`delete from runs`);
    await t.db.query(`delete from credentials`);
    await t.db.query(`delete from workstations`);
    await addWorkstation(t.db, 'ws_ahead', 'fake', 1);
    await t.db.query(`update workstations set prefetch = 10 where id = 'ws_ahead'`);
    await t.db.query(
      `insert into runs (id, status, runtime, command, env, max_attempts, workstation_id)
       values ('busy', 'running', 'fake', '["x"]'::jsonb, '{}'::jsonb, 1, 'ws_ahead')`,
    );
    await addWorkstation(t.db, 'ws_idle', 'fake', 1);

    const inSql = await t.db.query<{ id: string }>(
      `with x as (select 'fake'::text as runtime, null::text as placement_workstation_id, '{}'::jsonb as placement_labels,
                         null::float8 as cpus, null::bigint as memory_bytes)
       select w.id from x, workstations w ${USED_SQL} where ${PLACEABLE_SQL} and ${FITS_SQL}
        order by ${PREFERENCE_SQL} limit 1`,
    );
    expect(inSql.rows[0]?.id).toBe('ws_idle');

    await t.db.query(
      `insert into runs (id, status, runtime, command, env, max_attempts)
         select 'run_' || i, 'queued', 'fake', '["x"]'::jsonb, '{}'::jsonb, 1 from generate_series(1, 3) i`,
    );
    await newScheduler(t.db).pass();
    const placed = await t.db.query<{ id: string; workstation_id: string | null }>(
      `select id, workstation_id from runs where id like 'run_%' order by position`,
    );
    // the idle slot first; the rest wait ahead on the busy one (the idle one is then full)
    expect(placed.rows).toEqual([
      { id: 'run_1', workstation_id: 'ws_idle' },
      { id: 'run_2', workstation_id: 'ws_ahead' },
      { id: 'run_3', workstation_id: 'ws_ahead' },
    ]);
  });
});
