import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Database, migrate, openPostgres } from '@runt/sql';
import { createTestDatabase, TEST_BACKENDS } from '@runt/sql/testing';
import { describe, expect, it } from 'vitest';
import { isLeaseError } from '../src/errors.js';
import { createSqlLeaseStore } from '../src/lease-store.js';
import { leaseMigrations } from '../src/migrations.js';
import { checkExclusiveIntervals, type HeldInterval } from './lease-intervals.js';

const CLAIMERS = 8;
const ATTEMPTS = 60;
const TTL_MS = 15;

/** One claimer: the same loop as test/claim-worker.mjs, over its own `Database`. */
async function claimLoop(db: Database, resource: string, holder: string): Promise<HeldInterval[]> {
  const store = createSqlLeaseStore(db);
  const events: HeldInterval[] = [];
  const record = (token: number, acquiredAt: Date, end: Date) =>
    events.push({ holder, token, acquiredAt: acquiredAt.getTime(), end: end.getTime() });
  for (let i = 0; i < ATTEMPTS; i++) {
    try {
      const grant = await store.claim(resource, holder, TTL_MS);
      record(grant.fencingToken, grant.acquiredAt, grant.expiresAt);
      const roll = Math.random();
      if (roll < 0.3) {
        const renewed = await store.renew(resource, holder, grant.fencingToken, TTL_MS).catch((e) => {
          if (isLeaseError(e, 'runner-lease-conflict')) return undefined;
          throw e;
        });
        if (renewed) record(grant.fencingToken, grant.acquiredAt, renewed.expiresAt);
      }
      if (roll < 0.7) {
        const released = await store.release(resource, holder, grant.fencingToken);
        if (released) record(grant.fencingToken, grant.acquiredAt, released.expiresAt);
      }
    } catch (e) {
      if (!isLeaseError(e, 'runner-lease-conflict')) throw e;
    }
    await new Promise((r) => setTimeout(r, Math.random() * 3));
  }
  return events;
}

describe.each(TEST_BACKENDS)('concurrent claimers on %s', (backend) => {
  it(`${CLAIMERS} claimers on separate connections never both hold the lease`, async () => {
    const t = await createTestDatabase(backend);
    const pools: Database[] = [];
    try {
      await migrate(t.db, leaseMigrations);
      // PGlite has one connection: its claimers are concurrent promises on it.
      for (let i = 0; i < CLAIMERS; i++)
        pools.push(t.url ? await openPostgres({ url: t.url, max: 1 }) : t.db);
      const perHolder = await Promise.all(pools.map((db, i) => claimLoop(db, 'run_hot', `ws_${i}`)));
      const { tokens, problems } = checkExclusiveIntervals(perHolder);
      expect(problems).toEqual([]);
      expect(tokens).toBeGreaterThan(CLAIMERS);
      const final = await createSqlLeaseStore(t.db).get('run_hot');
      expect(final?.fencingToken).toBe(tokens);
    } finally {
      for (const db of pools) if (db !== t.db) await db.close();
      await t.dispose();
    }
  });
});

describe('claimers in separate processes on postgres', () => {
  it('4 node processes never both hold the lease and tokens strictly increase', async () => {
    const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    expect(existsSync(dist), 'build the package first (npx tsup): the workers import dist/').toBe(true);
    const t = await createTestDatabase('postgres');
    try {
      await migrate(t.db, leaseMigrations);
      const worker = fileURLToPath(new URL('./claim-worker.mjs', import.meta.url));
      const runs = Array.from({ length: 4 }, (_, i) => runWorker(worker, t.url!, `proc_${i}`));
      const outputs = await Promise.all(runs);
      const { tokens, problems } = checkExclusiveIntervals(outputs.map((o) => o.events));
      expect(problems).toEqual([]);
      expect(tokens).toBeGreaterThan(4);
      expect(outputs.reduce((n, o) => n + o.conflicts, 0)).toBeGreaterThan(0);
      expect((await createSqlLeaseStore(t.db).get('run_proc'))?.fencingToken).toBe(tokens);
    } finally {
      await t.dispose();
    }
  });
});

function runWorker(
  script: string,
  url: string,
  holder: string,
): Promise<{ conflicts: number; events: HeldInterval[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      env: {
        ...process.env,
        DATABASE_URL: url,
        RESOURCE: 'run_proc',
        HOLDER: holder,
        ATTEMPTS: '150',
        TTL_MS: String(TTL_MS),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`worker ${holder} exited ${code}: ${err}`));
      resolve(JSON.parse(out) as { conflicts: number; events: HeldInterval[] });
    });
  });
}
