import { submitRunRequestSchema } from '@runt/protocol';
import { isConnectionLost, openPostgres, POOL_MAX } from '@runt/sql';
import type { TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import * as transitions from '../src/runs/transitions.js';
import { migratedDatabase } from './scheduler-fixtures.js';

/**
 * A server restart, as the pool sees it, without restarting the shared server: every backend
 * of the pool's database terminated (`pg_terminate_backend`), then at once the statements that
 * must not hang on what the restart left — the pass's and the submit's WAL flush (`flushWal`,
 * one attempt) and their read-back (`confirmRuns`; `confirmClaims` is the same statement head).
 * None hangs: a pooled connection the server closed fails its statement at once, as a lost
 * connection (the pool may hand out several such before it has dropped them all, or none when
 * it saw them close first: the race is the server's), and a new one is opened for the next
 * (docs/reliability.md, "A flush after a restart").
 */
describe('a WAL flush and a read-back right after the pool’s connections were terminated', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase('postgres');
  });
  afterAll(async () => t?.dispose());

  /** Every pooled connection open, then terminated by another session. */
  async function killPool(): Promise<number> {
    await Promise.all(Array.from({ length: 10 }, () => t.db.query('select pg_sleep(0.02)')));
    // From the priority lane's own connection: every other backend of this database (the main
    // pool's) is terminated.
    const r = await t.db.priority.query<{ n: number }>(
      `select count(pg_terminate_backend(pid))::int as n from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid()`,
    );
    return r.rows[0]!.n;
  }

  /** How `p` settled (its error, if it failed) and how long it took. */
  async function timed(p: () => Promise<unknown>): Promise<{ ok: boolean; ms: number; err?: unknown }> {
    const start = performance.now();
    const out = await p().then(
      () => ({ ok: true }),
      (err: unknown) => ({ ok: false, err }),
    );
    return { ...out, ms: performance.now() - start };
  }

  it.each([
    ['flushWal (one attempt)', () => transitions.flushWal(t.db, { retry: false })],
    ['confirmRuns', () => transitions.confirmRuns(t.db, ['run_none'])],
  ])(
    '%s never hangs: an attempt that fails does so at once, as a lost connection, and one answers within POOL_MAX + 1',
    async (_name, ask) => {
      const run = (
        await transitions.submit(t.db, submitRunRequestSchema.parse({ runtime: 'x', command: ['x'] }))
      ).run;
      expect(await killPool()).toBeGreaterThanOrEqual(10);
      // Measured (2026-12-01, load 11-15): 1 to 4 attempts fail in 0-30 ms each (a terminated
      // connection the pool had not dropped yet), then one answers on a new connection (~150 ms).
      const attempts: Array<{ ok: boolean; ms: number; err?: unknown }> = [];
      while (!attempts.at(-1)?.ok) {
        expect(attempts.length, JSON.stringify(attempts)).toBeLessThanOrEqual(POOL_MAX);
        attempts.push(await timed(ask));
        expect(attempts.at(-1)!.ms).toBeLessThan(2000);
      }
      // What the submit's read-back asks again at once on (readBack): a failure that is not a
      // lost connection would go unretried, the submit unanswered.
      for (const a of attempts.slice(0, -1)) expect(isConnectionLost(a.err), String(a.err)).toBe(true);
      expect(await transitions.confirmRuns(t.db, [run.id])).toBe(true);
    },
  );
});

describe('a submit’s read-back (readBack) asks again at once only on a lost connection, bounded', () => {
  const lost = () =>
    Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });

  it('not again when no connection could be opened (refused): a silent host would wait its connect timeout each time', async () => {
    let asked = 0;
    const err = await transitions
      .readBack(() => (asked++, openPostgres({ url: 'postgres://postgres@127.0.0.1:1/test' })))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(asked).toBe(1);
  });

  it('at most POOL_MAX + 1 tries on lost connections (each pooled one fails once, then a new one is opened)', async () => {
    let asked = 0;
    await expect(transitions.readBack(() => (asked++, Promise.reject(lost())))).rejects.toThrow(
      /terminating/,
    );
    expect(asked).toBe(POOL_MAX + 1);
    asked = 0;
    expect(await transitions.readBack(async () => (++asked < 3 ? Promise.reject(lost()) : 'read'))).toBe(
      'read',
    );
    expect(asked).toBe(3);
  });

  it('not past its deadline (2 s from its first try)', async () => {
    let clock = Date.now();
    const now = vi.spyOn(Date, 'now').mockImplementation(() => clock);
    try {
      let asked = 0;
      const slowLost = () => {
        asked++;
        clock += 1_500;
        return Promise.reject(lost());
      };
      await expect(transitions.readBack(slowLost)).rejects.toThrow(/terminating/);
      expect(asked).toBe(2);
    } finally {
      now.mockRestore();
    }
  });
});
