import { leaseMigrations } from '@runt/leases';
import { pairingMigrations } from '@runt/pairing';
import { submitRunRequestSchema } from '@runt/protocol';
import { countStatements, migrate } from '@runt/sql';
import { createTestDatabase, TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventWaiters } from '../src/event-waiters.js';
import { controlPlaneMigrations } from '../src/migrations.js';
import { createRunSignals } from '../src/runs/run-signals.js';
import { Scheduler } from '../src/runs/scheduler.js';
import * as transitions from '../src/runs/transitions.js';

/**
 * The offer path's round trips (issue 10): a pass that places a fresh run sends `BEGIN`, the
 * advisory lock (Postgres only: the page's snapshot must come after it), ONE statement for the
 * queued page and its candidate workstations, the offer `update` and `COMMIT` — each round trip
 * costs a wake-up of Postgres on a loaded machine.
 */
describe.each(TEST_BACKENDS)('scheduling pass round trips on %s', (backend) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase(backend);
    await migrate(t.db, [...pairingMigrations, ...leaseMigrations, ...controlPlaneMigrations]);
    await t.db.query(
      `insert into workstations (id, display_name, listening, last_seen_at, runtimes, cpu_count, link_state)
       values ('ws_rt', 'ws_rt', true, now(), '["rt"]', 2, 'connected')`,
    );
    await t.db.query(
      `insert into credentials (id, kind, token_hash, workstation_id) values ('cred_rt', 'workstation', 'x', 'ws_rt')`,
    );
  });
  afterAll(async () => t?.dispose());

  it('places a fresh run in one transaction of at most 5 statements (4 on PGlite)', async () => {
    let statements = 0;
    const db = countStatements(t.db, (c) => (statements += c.statements));
    const signals = createRunSignals({
      waiters: new EventWaiters(),
      // no agent links in this test: nothing to carry
      relay: { send() {}, relay: async (_tx, items) => items, capacityFreed() {} },
    });
    const scheduler = new Scheduler({
      db,
      logger: pino({ level: 'silent' }),
      signals,
      replicaId: 'cp',
      tickMs: 60_000,
    });
    const { run } = await transitions.submit(
      t.db,
      submitRunRequestSchema.parse({ runtime: 'rt', command: ['x'] }),
    );
    const offered = await scheduler.pass();
    expect(offered.map((r) => [r.id, r.status, r.workstation_id])).toEqual([[run.id, 'offered', 'ws_rt']]);
    expect(statements).toBe(backend === 'postgres' ? 5 : 4);
    // Within capacity: a second and third run, one slot left for the second only (cpu_count 2).
    const second = (
      await transitions.submit(t.db, submitRunRequestSchema.parse({ runtime: 'rt', command: ['x'] }))
    ).run;
    const third = (
      await transitions.submit(t.db, submitRunRequestSchema.parse({ runtime: 'rt', command: ['x'] }))
    ).run;
    expect((await scheduler.pass()).map((r) => r.id)).toEqual([second.id]);
    expect((await scheduler.pass()).map((r) => r.id)).toEqual([]);
    const status = await t.db.query<{ status: string }>('select status from runs where id = $1', [third.id]);
    expect(status.rows[0]!.status).toBe('queued');
  });
});
