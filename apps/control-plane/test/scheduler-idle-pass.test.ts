import { submitRunRequestSchema } from '@runt/protocol';
import { openPostgres } from '@runt/sql';
import { TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pageSql, SCHEDULER_LOCK } from '../src/runs/scheduler.js';
import * as transitions from '../src/runs/transitions.js';
import {
  addWorkstation,
  explainRowsRead,
  migratedDatabase,
  newScheduler,
  untilPassWaitsForLock,
} from './scheduler-fixtures.js';

// Issue 9 (links): a scheduling pass over an empty queue — the tick, and the pass each window of
// link registrations asks for — walked every listening workstation twice (with its credential and
// used slots): 0.3–0.9 s of database time per pass at ~13,000 workstations, most of the
// database's CPU per link when 19,800 agents re-linked. Now it reads none until a run is queued.
describe.each(TEST_BACKENDS)('a scheduling page over an empty queue, on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase(backend);
    // 300 listening, linked workstations, each with a live credential and a free slot.
    await t.db.query(
      `insert into workstations (id, display_name, listening, last_seen_at, runtimes, cpu_count, link_state)
         select 'ws_' || i, 'ws', true, now(), '["rt"]'::jsonb, 1, 'connected' from generate_series(1, 300) i`,
    );
    await t.db.query(
      `insert into credentials (id, kind, token_hash, workstation_id)
         select 'cred_' || i, 'workstation', 'hash_' || i, 'ws_' || i from generate_series(1, 300) i`,
    );
  });
  afterAll(async () => t?.dispose());

  const page = async () => {
    const read = await explainRowsRead(t.db, pageSql(true), [0, 200], ['workstations', 'credentials']);
    const row = await t.db.query<{ any_free: boolean; free_ws: number; queued: unknown[] }>(
      pageSql(true),
      [0, 200],
    );
    return { read, row: row.rows[0]! };
  };

  it('reads no workstation, and says some may be free', async () => {
    const { read, row } = await page();
    expect(read).toBe(0); // was ≥ 600: every workstation and credential, twice
    expect(row.any_free).toBe(true);
    expect(row.queued).toEqual([]);
  });

  it('reads the fleet once a run is queued', async () => {
    await transitions.submit(t.db, submitRunRequestSchema.parse({ runtime: 'rt', command: ['x'] }));
    const { read, row } = await page();
    expect(read).toBeGreaterThanOrEqual(300);
    expect(row.any_free).toBe(true);
    expect(row.free_ws).toBe(300);
    expect(row.queued).toHaveLength(1);
  });
});

// Issue 10 (the cross-replica offer's tail): a pass over an empty queue — the pass every
// finish, registration and tick asks for — held the scheduler's advisory lock from its page's
// answer to its COMMIT (a client round trip), and a lone submit's placement waited for it.
// Now its lock statement takes the lock only when a run is queued.
describe('a scheduling pass on postgres and the scheduler lock', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase('postgres');
    await addWorkstation(t.db, 'ws_idle', 'idle', 2);
  });
  afterAll(async () => t?.dispose());

  it('does not wait for it over an empty queue, and still does once a run is queued', async () => {
    const other = await openPostgres({ url: t.url! });
    let release: () => void = () => {};
    const released = new Promise<void>((r) => (release = r));
    let locked: () => void = () => {};
    const lockHeld = new Promise<void>((r) => (locked = r));
    const holder = other.transaction(async (tx) => {
      await tx.query('select pg_advisory_xact_lock($1)', [SCHEDULER_LOCK]);
      locked();
      await released;
    });
    try {
      await lockHeld;
      const scheduler = newScheduler(t.db);
      const idle = await Promise.race([
        scheduler.pass().then((offered) => ({ offered })),
        new Promise<'blocked'>((r) => setTimeout(() => r('blocked'), 3000)),
      ]);
      expect(idle).toEqual({ offered: [] });
      // A queued run: the pass takes the lock (and so waits for the holder) before its page.
      const { run } = await transitions.submit(
        t.db,
        submitRunRequestSchema.parse({ runtime: 'idle', command: ['x'] }),
      );
      const pass = scheduler.pass();
      await untilPassWaitsForLock(t.db);
      release();
      await holder;
      expect((await pass).map((r) => [r.id, r.status])).toEqual([[run.id, 'offered']]);
    } finally {
      release();
      await holder.catch(() => {});
      await other.close();
    }
  });
});
