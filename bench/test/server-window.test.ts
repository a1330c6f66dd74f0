import { spawnSync } from 'node:child_process';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  createBenchDatabase,
  describeServerPhase,
  measurePeer,
  RuntSystem,
  ServerWindow,
} from '../src/index.js';
import { BENCH_LOCK, useBenchLock } from './bench-lock.js';

// The bench's fairness on the shared Postgres server (docs/benchmarks.md, decisions): every
// measured phase of every system starts on a CHECKPOINT, and prints what the server did in it.
describe('the server window of a Postgres phase', () => {
  // Its CHECKPOINTs (and drops) are cluster-wide: never inside another session's bench phase.
  useBenchLock();

  it('starts on a checkpoint: the first change of each page written before it pays a full-page image in the phase', async () => {
    // The benches' own lock is held here: a bench's `flock` would wait for this test.
    expect(spawnSync('flock', ['-n', BENCH_LOCK, 'true']).status).not.toBe(0);
    const db = await createBenchDatabase('smoke');
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      await c.query(`create table t (id int primary key, n int not null)`);
      await c.query(`insert into t select g, 0 from generate_series(1, 20000) g`);
      const pages = Number(
        (await c.query<{ n: string }>(`select pg_relation_size('t') / 8192 as n`)).rows[0]!.n,
      );
      const walDbs = async () =>
        (
          await c.query<{ datname: string }>(
            `select datname from pg_database where datname like 'runt\\_bench\\_wal\\_%'`,
          )
        ).rows.map((r) => r.datname);
      const before = await walDbs();
      const w = await ServerWindow.open('checkpoint');
      await c.query(`update t set n = 1`);
      const s = await w.close();
      // Its pg_walinspect database is its own and gone with it: nothing left on the shared server.
      expect((await walDbs()).filter((d) => !before.includes(d))).toEqual([]);
      expect(s.settle).toBe('checkpoint');
      expect(s.checkpointMs).toBeGreaterThanOrEqual(0);
      expect(s.walBytes).toBeGreaterThan(0);
      expect(s.walRecords).toBeGreaterThan(20000);
      // Every heap page the update touched was written before the checkpoint: ≥ one image each
      // (a page's image leaves out its free hole, so ≥ half a page's bytes for these full pages).
      expect(s.fpiBytes).toBeGreaterThan(pages * 4096);
      expect(s.probeMs).toBeGreaterThan(0);
      // The server is on this machine (loopback): its disk's writes over the phase, the WAL's at least.
      expect(s.disk!.writtenBytes).toBeGreaterThanOrEqual(s.walBytes * 0.5);
      expect(describeServerPhase(s, 20000)).toMatch(
        /^server: CHECKPOINT \d+ ms \+ 500 ms quiet before; in it \d+ checkpoints?/,
      );
    } finally {
      await c.end();
      await db.drop();
    }
  });

  it("is part of each peer's timed window on Postgres (none on PGlite)", async () => {
    const m = await measurePeer({ peer: 'raw', backend: 'postgres', mode: 'drain', jobs: 500 });
    expect(m.server).toMatchObject({ settle: 'checkpoint' });
    // The backlog was inserted before the checkpoint: the drain's updates write its pages' images.
    expect(m.server!.fpiBytes).toBeGreaterThan(0);
    expect(m.cpuMsPerJob.databaseSystem).toBeLessThanOrEqual(m.cpuMsPerJob.database);
    const lite = await measurePeer({ peer: 'raw', backend: 'pglite', mode: 'drain', jobs: 50 });
    expect(lite.server).toBeUndefined();
  });

  it('is part of each runt phase on Postgres, with its re-queues and offers as whole counts', async () => {
    const system = await RuntSystem.start({ backend: 'postgres', agents: 1, maxRuns: 4 });
    try {
      const m = await system.burst(40, 60_000, 'batch');
      expect(m.finished).toBe(40);
      expect(m.server).toMatchObject({ settle: 'checkpoint' });
      expect(m.server!.walRecords).toBeGreaterThan(0);
      // Whole counts, by reason: none re-queued (an empty set of reasons), every run offered.
      expect(m.counts.requeues).toEqual({});
      expect(m.counts.offers).toBeGreaterThanOrEqual(40);
    } finally {
      await system.close();
    }
  });
});
