import { describe, expect, it } from 'vitest';
import { openPostgres } from './postgres.js';
import { createTestDatabase } from './testing.js';
import { isDatabaseUnavailable } from './database-unavailable.js';

describe('isDatabaseUnavailable', () => {
  it('is true for a server that refuses connections, false for a bad statement', async () => {
    const t = await createTestDatabase('postgres');
    try {
      const err = await t.db.query('select * from no_such_table').catch((e: unknown) => e);
      expect(isDatabaseUnavailable(err)).toBe(false);
      // A server whose connections are terminated (what a restart does to a pool).
      const admin = await openPostgres({ url: t.url as string, max: 1 });
      const terminated = await admin
        .transaction(async (tx) => {
          const victim = await tx.query<{ pid: number }>('select pg_backend_pid() as pid');
          await t.db.query('select pg_terminate_backend($1)', [victim.rows[0]!.pid]);
          return tx.query('select 1');
        })
        .catch((e: unknown) => e);
      await admin.close();
      expect(terminated instanceof Error && isDatabaseUnavailable(terminated)).toBe(true);
    } finally {
      await t.dispose();
    }
    const refused = await openPostgres({ url: 'postgres://postgres@127.0.0.1:1/test' }).catch(
      (e: unknown) => e,
    );
    expect(isDatabaseUnavailable(refused)).toBe(true);
    expect(isDatabaseUnavailable(new Error('syntax error at or near "x"'))).toBe(false);
    expect(isDatabaseUnavailable(undefined)).toBe(false);
  });
});
