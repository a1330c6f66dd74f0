import pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  createBenchDatabase,
  graphilePeer,
  measurePeer,
  nowMs,
  rawCeilingPeer,
  RuntSystem,
  type Peer,
} from '../src/index.js';
import { useBenchLock } from './bench-lock.js';

// The bench's fairness (docs/benchmarks.md, decisions): an untimed warm-up per system before its
// timed phases, counted in no figure, and a graphile-worker burst beside runt's burst-batch.
describe('warm-up and the graphile-worker burst', () => {
  // A peer measured on Postgres starts on a CHECKPOINT: under the benches' lock (bench-lock.ts).
  useBenchLock();

  it('graphile-worker bursts: addJobs while its runner runs, every job completed once, timed from the first insert', async () => {
    const db = await createBenchDatabase('smoke');
    const probe = new pg.Client({ connectionString: db.url });
    let peer: Peer | undefined;
    try {
      peer = await graphilePeer(db.url);
      const t0 = nowMs();
      // 2,500: three addJobs batches (1,000, 1,000, 500), two in flight.
      const r = await peer.burst!(2500);
      const wall = (nowMs() - t0) / 1000;
      expect(r).toMatchObject({ jobs: 2500, completed: 2500 });
      expect(r.seconds).toBeGreaterThan(0);
      expect(r.seconds).toBeLessThanOrEqual(wall);
      await probe.connect();
      // Every completion written: nothing left in the jobs table.
      const left = await probe.query<{ n: string }>(
        'select count(*) as n from graphile_worker._private_jobs',
      );
      expect(Number(left.rows[0]!.n)).toBe(0);
      // A close that fails fails the test, as before; `finally` closes a peer left open by a failure.
      const closing = peer;
      peer = undefined;
      await closing.close();
    } finally {
      await peer?.close().catch(() => {});
      await probe.end().catch(() => {});
      await db.drop();
    }
  });

  it("graphile-worker's timed drain runs on the connections its warm-up opened (as runt's and raw's do)", async () => {
    const db = await createBenchDatabase('smoke');
    const probe = new pg.Client({ connectionString: db.url });
    const backends = async () =>
      new Set(
        (
          await probe.query<{ pid: number }>(
            'select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()',
          )
        ).rows.map((r) => r.pid),
      );
    let peer: Peer | undefined;
    // The database is dropped whatever fails, its probe's or peer's start included.
    try {
      await probe.connect();
      peer = await graphilePeer(db.url);
      // a warm-up smaller than the drain after it: the drain's runner needs more connections at
      // once than the warm-up's used (a pool grows on demand; CI saw 2 new backends so)
      await peer.warmUp!(50, 'drain');
      const warm = await backends();
      await peer.prepare(2000);
      await peer.drain();
      const timed = await backends();
      // No backend the drain's runner opened: a runner with its own pool ends it at stop, and the
      // timed one would start on new backends (their start-up and first plans in its figures).
      expect([...timed].filter((pid) => !warm.has(pid))).toEqual([]);
    } finally {
      await peer?.close().catch(() => {});
      await probe.end().catch(() => {});
      await db.drop();
    }
  });

  it('a raw warm-up is not in the drain it precedes', async () => {
    const peer = await rawCeilingPeer({ backend: 'pglite', workers: 4 });
    const w = await peer.warmUp!(30, 'drain');
    expect(w).toMatchObject({ jobs: 30, completed: 30 });
    await peer.prepare(50);
    expect(await peer.drain()).toMatchObject({ jobs: 50, completed: 50 });
    await peer.close();
  });

  for (const p of ['raw', 'graphile'] as const)
    for (const mode of ['drain', 'burst'] as const)
      it(`${p} ${mode}: the measuring process warms up first and reports it apart from the figures`, async () => {
        const m = await measurePeer({ peer: p, backend: 'postgres', mode, jobs: 50, warmup: 40 }, 30_000);
        expect(m.warmup).toMatchObject({ jobs: 40, completed: 40 });
        expect(m.drain).toMatchObject({ jobs: 50, completed: 50 });
      });

  it('runt warms up through its agents, and the drain counts only its own backlog', async () => {
    const system = await RuntSystem.start({ backend: 'pglite', agents: 1, maxRuns: 4 });
    try {
      const w = await system.warmUp(30, 60_000);
      expect(w).toMatchObject({ runs: 30, finished: 30 });
      const m = await system.drain(20, 60_000);
      // Exactly its 20 runs open at the start and finished in its window: none of the warm-up's.
      expect(m).toMatchObject({ runs: 20, finished: 20, backlog: 20 });
    } finally {
      await system.close();
    }
    // Agent processes started through the CLI: ~40 s on this loaded machine.
  }, 180_000);
});
