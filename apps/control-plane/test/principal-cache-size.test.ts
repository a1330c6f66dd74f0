import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashToken } from '@runt/transport-auth';
import { NotificationBus } from '../src/notifications/bus.js';
import { PrincipalCache } from '../src/stores/principal-cache.js';
import { seedFleet, startHarness, type Harness } from './harness.js';

// A fleet of 20,000+ agents (issue 9): every agent's credential must stay cached, or each of
// their HTTP calls and every re-link after a restart would read the database again.
describe('the principal cache holds a 20,000-agent fleet (pglite: always caching)', () => {
  let h: Harness;
  let fleet: string[] = [];
  beforeAll(async () => {
    h = await startHarness('pglite');
    fleet = (await seedFleet(h.t.db, 20_500, 'ws_fleet', 'fleet')).tokens;
  }, 120_000);
  afterAll(async () => h?.close());

  it('by default keeps all 20,500: a second round is all hits', async () => {
    const principals = new PrincipalCache(h.t.db, new NotificationBus(h.t.db, {}));
    const first = await Promise.all(fleet.map((t) => principals.resolve(hashToken(t), 'workstation')));
    expect(first.every((p) => p?.workstationId?.startsWith('ws_fleet_'))).toBe(true);
    const misses = principals.stats().misses;
    await Promise.all(fleet.map((t) => principals.resolve(hashToken(t), 'workstation')));
    expect(principals.stats()).toMatchObject({ size: 20_500, misses, hits: 20_500 });
  }, 120_000);

  it('evicts the least recently used past maxEntries', async () => {
    const principals = new PrincipalCache(h.t.db, new NotificationBus(h.t.db, {}), { maxEntries: 2 });
    const [a, b, c] = fleet.map((t) => hashToken(t));
    await principals.resolve(a!, 'workstation');
    await principals.resolve(b!, 'workstation');
    await principals.resolve(a!, 'workstation'); // a is now the most recent
    await principals.resolve(c!, 'workstation'); // evicts b
    const { misses } = principals.stats();
    await principals.resolve(a!, 'workstation');
    await principals.resolve(c!, 'workstation');
    expect(principals.stats()).toMatchObject({ size: 2, misses });
    await principals.resolve(b!, 'workstation');
    expect(principals.stats().misses).toBe(misses + 1);
  });
});
