import { leaseMigrations } from '@runt/leases';
import { pairingMigrations } from '@runt/pairing';
import { submitRunRequestSchema } from '@runt/protocol';
import { migrate, openPostgres, type Database } from '@runt/sql';
import { createTestDatabase, type TestDatabase } from '@runt/sql/testing';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventWaiters } from '../src/event-waiters.js';
import { controlPlaneMigrations } from '../src/migrations.js';
import { createRunSignals } from '../src/runs/run-signals.js';
import { SCHEDULER_LOCK, Scheduler } from '../src/runs/scheduler.js';
import * as transitions from '../src/runs/transitions.js';

/**
 * Scheduling with several replicas on one Postgres (issue 10, replica throughput): each replica
 * places only onto the workstations whose link it holds (`link_replica`), plus onto those linked
 * to no replica while it holds the advisory lock, so the passes of replicas whose agents are all
 * linked never wait for each other.
 */

/** A listening workstation with a live credential offering `runtime`, linked to `replica` (or to none). */
async function addWorkstation(
  db: Database,
  id: string,
  runtime: string,
  slots: number,
  replica: string | null,
): Promise<void> {
  await db.query(
    `insert into workstations (id, display_name, listening, last_seen_at, runtimes, cpu_count, link_state, link_replica)
     values ($1, $1, true, now(), $2::jsonb, $3, 'connected', $4)`,
    [id, JSON.stringify([runtime]), slots, replica],
  );
  await db.query(
    `insert into credentials (id, kind, token_hash, workstation_id) values ($1, 'workstation', $2, $3)`,
    [`cred_${id}`, `hash_${id}`, id],
  );
}

/** A scheduler of replica `replicaId`; no links are held in this process, nothing is carried. */
function schedulerOf(db: Database, replicaId: string): Scheduler {
  return new Scheduler({
    db,
    logger: pino({ level: 'silent' }),
    signals: createRunSignals({
      waiters: new EventWaiters(),
      relay: { send() {}, relay: async (_tx, items) => items, capacityFreed() {} },
    }),
    replicaId,
    tickMs: 60_000,
  });
}

const submit = async (db: Database, runtime: string) =>
  (await transitions.submit(db, submitRunRequestSchema.parse({ runtime, command: ['x'] }))).run;

const placements = async (db: Database, runtime: string) =>
  (
    await db.query<{ status: string; workstation_id: string | null }>(
      `select status, workstation_id from runs where runtime = $1 order by position`,
      [runtime],
    )
  ).rows.map((r) => `${r.status}@${r.workstation_id ?? '-'}`);

describe('scheduling passes of several replicas on postgres', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase('postgres');
    await migrate(t.db, [...pairingMigrations, ...leaseMigrations, ...controlPlaneMigrations]);
  });
  afterAll(async () => t?.dispose());

  it("places only onto the workstations linked to its own replica, never onto another replica's", async () => {
    await addWorkstation(t.db, 'ws_own_a', 'own', 1, 'cp-a');
    await addWorkstation(t.db, 'ws_own_b', 'own', 1, 'cp-b');
    await submit(t.db, 'own');
    await submit(t.db, 'own');
    // cp-b's pass takes the oldest run for its own workstation and leaves the other queued.
    expect((await schedulerOf(t.db, 'cp-b').pass()).map((r) => r.workstation_id)).toEqual(['ws_own_b']);
    expect(await placements(t.db, 'own')).toEqual(['offered@ws_own_b', 'queued@-']);
    expect((await schedulerOf(t.db, 'cp-a').pass()).map((r) => r.workstation_id)).toEqual(['ws_own_a']);
    expect(await placements(t.db, 'own')).toEqual(['offered@ws_own_b', 'offered@ws_own_a']);
  });

  it('does not wait for the advisory lock when every workstation it could use is linked to it', async () => {
    await addWorkstation(t.db, 'ws_free_a', 'free', 2, 'cp-a');
    await submit(t.db, 'free');
    const other = await openPostgres({ url: t.url! });
    try {
      let release: () => void = () => {};
      const released = new Promise<void>((r) => (release = r));
      let locked: () => void = () => {};
      const lockHeld = new Promise<void>((r) => (locked = r));
      // Another replica's pass holding the lock as long as it likes.
      const holder = other.transaction(async (tx) => {
        await tx.query('select pg_advisory_xact_lock($1)', [SCHEDULER_LOCK]);
        locked();
        await released;
      });
      await lockHeld;
      try {
        const pass = schedulerOf(t.db, 'cp-a').pass();
        const outcome = await Promise.race([
          pass.then((runs) => runs.map((r) => r.workstation_id)),
          new Promise<string>((r) => setTimeout(() => r('still waiting after 5 s'), 5000)),
        ]);
        expect(outcome).toEqual(['ws_free_a']);
      } finally {
        release();
        await holder;
      }
    } finally {
      await other.close();
    }
  });

  it('never over-commits a workstation when passes of two processes with its replica id race', async () => {
    await addWorkstation(t.db, 'ws_race', 'race', 3, 'cp-r');
    for (let i = 0; i < 12; i++) await submit(t.db, 'race');
    const a = schedulerOf(t.db, 'cp-r');
    const b = schedulerOf(t.db, 'cp-r');
    for (let round = 0; round < 5; round++) await Promise.all([a.pass(), b.pass(), a.pass(), b.pass()]);
    const offered = (await placements(t.db, 'race')).filter((p) => p.startsWith('offered'));
    expect(offered).toEqual(['offered@ws_race', 'offered@ws_race', 'offered@ws_race']);
  });

  it('places onto a workstation linked to no replica while it holds the lock, and no run twice', async () => {
    await addWorkstation(t.db, 'ws_polling', 'poll', 4, null);
    for (let i = 0; i < 6; i++) await submit(t.db, 'poll');
    const passes = await Promise.all(['cp-a', 'cp-b', 'cp-c'].map((id) => schedulerOf(t.db, id).pass()));
    const ids = passes.flat().map((r) => r.id);
    expect(ids).toHaveLength(4);
    expect(new Set(ids).size).toBe(4);
    expect((await placements(t.db, 'poll')).filter((p) => p === 'offered@ws_polling')).toHaveLength(4);
  });
});
