import { describe, expect, it } from 'vitest';
import { createTestDatabase } from './testing.js';

describe('openPostgres', () => {
  it('survives a connection terminated inside a transaction (as a server restart does)', async () => {
    const t = await createTestDatabase('postgres');
    try {
      const err = await t.db
        .transaction(async (tx) => {
          const me = await tx.query<{ pid: number }>('select pg_backend_pid() as pid');
          await t.db.query('select pg_terminate_backend($1)', [me.rows[0]!.pid]);
          // Give the socket time to close while the client is still checked out: without a
          // listener its 'error' event is an uncaught exception that ends the process.
          await new Promise((r) => setTimeout(r, 200));
          return tx.query('select 1');
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      // The pool threw the broken client away: the next transaction works.
      const ok = await t.db.transaction((tx) => tx.query<{ one: number }>('select 1 as one'));
      expect(ok.rows[0]?.one).toBe(1);
    } finally {
      await t.dispose();
    }
  });
});
