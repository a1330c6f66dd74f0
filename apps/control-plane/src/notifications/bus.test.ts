import { createTestDatabase, type TestDatabase } from '@runt/sql/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { NotificationBus } from './bus.js';

const until = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
};

function recorder() {
  const log: string[] = [];
  return {
    log,
    handlers: {
      message: (p: string) => log.push(`message:${p}`),
      up: () => log.push('up'),
      down: () => log.push('down'),
    },
  };
}

describe('notification bus', () => {
  let t: TestDatabase | undefined;
  let bus: NotificationBus | undefined;
  afterEach(async () => {
    await bus?.close();
    await t?.dispose();
    bus = t = undefined;
  });

  it('delivers committed notifications to every subscriber of the channel on Postgres, and reports down and up again', async () => {
    t = await createTestDatabase('postgres');
    bus = new NotificationBus(t.db, { relistenMs: 50 });
    const a = recorder();
    const b = recorder();
    const other = recorder();
    bus.subscribe('runt_test_a', a.handlers);
    bus.subscribe('runt_test_a', b.handlers);
    bus.subscribe('runt_test_b', other.handlers);
    await bus.start();
    expect(a.log).toEqual(['up']);
    await t.db.query(`select pg_notify('runt_test_a', 'one')`);
    await until(() => a.log.length === 2 && b.log.length === 2);
    expect(a.log).toEqual(['up', 'message:one']);
    expect(b.log).toEqual(['up', 'message:one']);
    expect(other.log).toEqual(['up']);

    await t.db.query(
      `select pg_terminate_backend(pid) from pg_stat_activity where query ilike 'listen%runt_test_a%' and datname = current_database()`,
    );
    await until(() => a.log.includes('down'));
    await until(() => a.log.filter((x) => x === 'up').length === 2);
    await t.db.query(`select pg_notify('runt_test_a', 'two')`);
    await until(() => a.log.includes('message:two'));
    expect(a.log).toEqual(['up', 'message:one', 'down', 'up', 'message:two']);
    // The channels subscribed before start share one LISTEN connection (4b7073e): its loss is
    // every channel's, and the new connection listens on all of them again.
    await until(() => other.log.filter((x) => x === 'up').length === 2);
    await t.db.query(`select pg_notify('runt_test_b', 'three')`);
    await until(() => other.log.includes('message:three'));
    expect(other.log).toEqual(['up', 'down', 'up', 'message:three']);
    expect(a.log).toEqual(['up', 'message:one', 'down', 'up', 'message:two']);
  });

  it('is silent on PGlite, where no other replica can write', async () => {
    t = await createTestDatabase('pglite');
    bus = new NotificationBus(t.db);
    const a = recorder();
    bus.subscribe('runt_test_a', a.handlers);
    await bus.start();
    expect(bus.available).toBe(false);
    expect(a.log).toEqual([]);
  });
});
