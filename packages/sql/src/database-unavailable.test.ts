import { describe, expect, it } from 'vitest';
import { openPostgres } from './postgres.js';
import { createTestDatabase, type TestDatabase } from './testing.js';
import { isConnectionLost, isDatabaseUnavailable } from './database-unavailable.js';

/** The error of a statement whose connection the server terminated under it (what a restart does to a pool). */
async function terminatedError(t: TestDatabase): Promise<unknown> {
  const admin = await openPostgres({ url: t.url as string, max: 1 });
  try {
    return await admin
      .transaction(async (tx) => {
        const victim = await tx.query<{ pid: number }>('select pg_backend_pid() as pid');
        await t.db.query('select pg_terminate_backend($1)', [victim.rows[0]!.pid]);
        return tx.query('select 1');
      })
      .catch((e: unknown) => e);
  } finally {
    await admin.close();
  }
}

/** The error of opening a database on a port nobody listens on (refused). */
const refusedError = () =>
  openPostgres({ url: 'postgres://postgres@127.0.0.1:1/test' }).catch((e: unknown) => e);

describe('isDatabaseUnavailable', () => {
  it('is true for a server that refuses connections, false for a bad statement', async () => {
    const t = await createTestDatabase('postgres');
    try {
      const err = await t.db.query('select * from no_such_table').catch((e: unknown) => e);
      expect(isDatabaseUnavailable(err)).toBe(false);
      // A server whose connections are terminated (what a restart does to a pool).
      const terminated = await terminatedError(t);
      expect(terminated instanceof Error && isDatabaseUnavailable(terminated)).toBe(true);
    } finally {
      await t.dispose();
    }
    const refused = await refusedError();
    expect(isDatabaseUnavailable(refused)).toBe(true);
    expect(isDatabaseUnavailable(new Error('syntax error at or near "x"'))).toBe(false);
    expect(isDatabaseUnavailable(undefined)).toBe(false);
  });
});

describe('isConnectionLost', () => {
  it('is true for an open connection the server terminated, false for one that could not be opened', async () => {
    const t = await createTestDatabase('postgres');
    try {
      const terminated = await terminatedError(t);
      expect(isConnectionLost(terminated)).toBe(true);
    } finally {
      await t.dispose();
    }
    const refused = await refusedError();
    expect(isDatabaseUnavailable(refused)).toBe(true);
    expect(isConnectionLost(refused)).toBe(false);
    // A connect to a silent host: each would wait a full connect timeout again if asked at once.
    const timedOut = Object.assign(new Error('connect ETIMEDOUT 10.255.255.1:5432'), { code: 'ETIMEDOUT' });
    expect(isConnectionLost(timedOut)).toBe(false);
    expect(isConnectionLost(new Error('timeout exceeded when trying to connect'))).toBe(false);
    expect(isConnectionLost(new Error('Connection terminated due to connection timeout'))).toBe(false);
    expect(
      isConnectionLost(Object.assign(new Error('the database system is starting up'), { code: '57P03' })),
    ).toBe(false);
    expect(isConnectionLost(new Error('syntax error at or near "x"'))).toBe(false);
    expect(isConnectionLost(undefined)).toBe(false);
  });
});
