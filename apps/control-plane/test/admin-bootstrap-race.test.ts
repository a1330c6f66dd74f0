import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashToken, mintToken } from '@runt/transport-auth';
import { openPostgres, type Database } from '@runt/sql';
import type { TestDatabase } from '@runt/sql/testing';
import { NotificationBus } from '../src/notifications/bus.js';
import { CredentialStore } from '../src/stores/credential-store.js';
import { PrincipalCache } from '../src/stores/principal-cache.js';
import { migratedDatabase } from './scheduler-fixtures.js';

// Issue 10: replicas started at once on one Postgres with the same RUNT_ADMIN_TOKEN (the compose
// file's shape) each bootstrap the admin credential. Seen 2026-12-03 10:06 in the replicas bench:
// "cp1 exited (1) before it was ready: duplicate key value violates unique constraint
// credentials_token_hash_key" — two upserts of `admin-env` racing, the loser's speculative insert
// hitting the token hash's unique index, which `on conflict (id)` does not arbitrate.
describe('the admin credential bootstrap, replicas at once on Postgres', () => {
  let t: TestDatabase;
  /** One pool per replica, as each replica process has its own. */
  const pools: Database[] = [];
  beforeAll(async () => {
    t = await migratedDatabase('postgres');
    for (let i = 0; i < 8; i++) pools.push(await openPostgres({ url: t.url!, max: 1 }));
    await Promise.all(pools.map((p) => p.query('select 1')));
  });
  afterAll(async () => {
    await Promise.all(pools.map((p) => p.close()));
    await t?.dispose();
  });

  it('every replica starts: concurrent bootstraps with the same token all succeed, one credential', async () => {
    const stores = pools.map(
      (db) => new CredentialStore(db, new PrincipalCache(db, new NotificationBus(db, {}))),
    );
    for (let round = 0; round < 10; round++) {
      await t.db.query(`delete from credentials where kind = 'admin'`);
      const token = mintToken('admin');
      const answers = await Promise.allSettled(stores.map((s) => s.ensureAdmin({ token })));
      expect(answers.filter((a) => a.status === 'rejected')).toEqual([]);
      const rows = await t.db.query<{ id: string; token_hash: string }>(
        `select id, token_hash from credentials where kind = 'admin'`,
      );
      expect(rows.rows).toEqual([{ id: 'admin-env', token_hash: hashToken(token) }]);
    }
    // And a generated one (no RUNT_ADMIN_TOKEN): exactly one replica mints it.
    await t.db.query(`delete from credentials where kind = 'admin'`);
    const minted = await Promise.all(stores.map((s) => s.ensureAdmin({})));
    expect(minted.filter((m) => m.minted !== undefined)).toHaveLength(1);
  });
});
