import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createBenchDatabase, startNotifyFloor } from '../src/index.js';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

// The cross-replica offer's floor (issue 10): the same hops as runt's sample without runt, on a
// real Postgres server, so `pnpm bench` can print runt's cross-replica latency beside it.
describe('the notify floor', () => {
  it('offers each submitted row over B’s WebSocket, finishes it, and ends its processes', async () => {
    const db = await createBenchDatabase('floortest');
    try {
      const floor = await startNotifyFloor(db.url);
      const { a, b } = floor.pids;
      const ids = new Set<string>();
      try {
        for (let i = 0; i < 20; i++) {
          const s = await floor.sample();
          ids.add(s.id);
          expect(s.offerMs).toBeGreaterThan(0);
          expect(s.answeredMs).toBeGreaterThan(0);
          expect(s.offerMs).toBeLessThan(5_000);
        }
      } finally {
        await floor.close();
      }
      expect(ids.size).toBe(20);
      expect(alive(a) || alive(b)).toBe(false);
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      try {
        const rows = (await c.query<{ id: string; state: string }>('select id, state from floor_runs')).rows;
        expect(rows.map((r) => r.id).sort()).toEqual([...ids].sort());
        expect(new Set(rows.map((r) => r.state))).toEqual(new Set(['done']));
      } finally {
        await c.end();
      }
    } finally {
      await db.drop();
    }
  });

  it('fails with Postgres’s reason when its database cannot be reached', async () => {
    const db = await createBenchDatabase('floortest');
    const url = db.url;
    await db.drop(); // a database that no longer exists: the table cannot be made
    await expect(startNotifyFloor(url)).rejects.toThrow(/does not exist/);
  });
});

// The replicas bench's latency part, small: runt's cross-replica path (its link double claims
// and reports over the link) taking turns with the floor, and the ratio line.
describe('replicas-bench latency with the floor', () => {
  it('prints runt’s cross-replica figure, the floor’s and their ratio', async () => {
    const bin = fileURLToPath(new URL('../dist/replicas-bench.js', import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, [bin], {
      env: {
        ...process.env,
        BENCH_REPLICA_PARTS: 'latency',
        BENCH_REPLICA_LATENCY: 'cross,floor',
        BENCH_REPLICA_RUNS: '30',
        BENCH_REPLICA_WARMUP: '10',
        BENCH_REPLICA_FLOOR_BLOCK: '10',
      },
      timeout: 120_000,
    });
    const num = String.raw`\d+\.\d\d`;
    expect(stdout).toMatch(
      new RegExp(
        `submit on A, agent linked to B: +p50 ${num} ms p99 ${num} ms .*30 runs taking turns with the floor in blocks of 10`,
      ),
    );
    expect(stdout).toMatch(
      new RegExp(
        `floor, the same hops without runt: +p50 ${num} ms p99 ${num} ms .*taking turns with runt in blocks of 10`,
      ),
    );
    expect(stdout).toMatch(new RegExp(`cross-replica offer ÷ its floor: p50 ${num}× p99 ${num}×`));
  }, 150_000);
});
