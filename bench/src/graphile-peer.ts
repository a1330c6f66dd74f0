import pg from 'pg';
import { Logger, makeWorkerUtils, run, type Runner } from 'graphile-worker';
import type { Peer, PacedResult, WarmUpResult } from './peer.js';
import { nowMs, percentile, sleep } from './stats.js';

const SCHEMA = 'graphile_worker';
const quietLogger = new Logger(() => () => {});
/** `n` no-op jobs for one `addJobs` call. */
const noopJobs = (n: number) => Array.from({ length: n }, () => ({ identifier: 'noop', payload: {} }));
/** Connections in each of the peer's pools: node-postgres' default, as graphile-worker's own. */
const POOL_SIZE = 10;

/** Every connection `pool` may hold opened at once, then returned to it (kept: no idle timeout). */
async function openAll(pool: pg.Pool): Promise<void> {
  const clients = await Promise.all(Array.from({ length: POOL_SIZE }, () => pool.connect()));
  for (const c of clients) c.release();
}

/**
 * graphile-worker 0.17 in its fastest mode: concurrency 16, a local queue of 10, batched
 * completion (`completeJobBatchDelay: 0`), a no-op task; the backlog goes in with `addJobs`.
 * Done = the jobs table is empty (completion is batched, so counting task calls is not enough).
 * Burst: the runner is started first, then `workerUtils.addJobs` (graphile-worker's bulk add:
 * one `add_jobs` call, which notifies the runner) of 1,000 jobs, 2 in flight, as runt's
 * burst-batch submits; timed from the first insert to the last completion (polled every 10 ms
 * from the measuring process: a bias of ≤ 10 ms against graphile-worker, where runt's burst is
 * timed by the database's created_at and finished_at). Warm-up: a runner of the same config, in
 * the same process and on the same pool of connections, processes the warm-up jobs (added as the
 * burst adds them) and is stopped before the measured phase starts its own runner, so a drain
 * still starts its runner on a backlog inserted while none runs.
 *
 * @example
 * const p = await graphilePeer(url); await p.prepare(1000); console.log(await p.drain()); await p.close();
 */
export async function graphilePeer(
  url: string,
  o: { concurrency?: number; localQueueSize?: number } = {},
): Promise<Peer> {
  // One pool for every runner (warm-up and timed): a runner given a connection string makes its
  // own pool and ends it at stop, so the timed phase would start on new Postgres backends (their
  // start-up CPU and first plans counted, none prepared) while runt's and the other peers'
  // connections stay warm. node-postgres' default size, as graphile-worker's own pool (10). The
  // jobs are added through a pool of their own (workerUtils', as before: 10), so adding never
  // waits for a runner's connection. Neither closes an idle connection (node-postgres' default
  // closes one idle for 10 s), and the warm-up opens every connection of both (`openAll`): a
  // pool grows on demand, and a timed phase busier than its warm-up opened new backends
  // (bench/test/warm-up.test.ts, CI 2026-12-03: 2 new backends in the timed drain).
  const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE, idleTimeoutMillis: 0 });
  const addPool = new pg.Pool({ connectionString: url, max: POOL_SIZE, idleTimeoutMillis: 0 });
  for (const p of [pool, addPool]) {
    p.on('error', () => {}); // an idle connection's error: the pool drops it
    p.on('connect', (client) => client.on('error', () => {}));
  }
  const utils = await makeWorkerUtils({ pgPool: addPool, schema: SCHEMA });
  await utils.migrate();
  const probe = new pg.Client({ connectionString: url });
  await probe.connect();
  let onStart: (payload: { t?: number }) => void = () => {};
  /** Task calls so far (a job's completion may be written a little later: batched). */
  let calls = 0;
  let runner: Runner | undefined;
  let prepared = 0;
  const start = async () => {
    runner = await run({
      pgPool: pool,
      schema: SCHEMA,
      concurrency: o.concurrency ?? 16,
      noHandleSignals: true,
      pollInterval: 2000,
      logger: quietLogger,
      taskList: {
        noop: async (payload) => {
          calls++;
          onStart(payload as { t?: number });
        },
      },
      preset: {
        worker: {
          localQueue: { size: o.localQueueSize ?? 10 },
          completeJobBatchDelay: 0,
          failJobBatchDelay: 0,
        },
      },
    });
  };
  const remaining = async () =>
    Number(
      (await probe.query<{ n: string }>(`select count(*) as n from ${SCHEMA}._private_jobs`)).rows[0]!.n,
    );
  /** `jobs` added with `addJobs` in batches of 1,000, 2 in flight. */
  const addInBatches = async (jobs: number) => {
    let left = jobs;
    await Promise.all(
      Array.from({ length: 2 }, async () => {
        while (left > 0) {
          const size = Math.min(1000, left);
          left -= size;
          await utils.addJobs(noopJobs(size));
        }
      }),
    );
  };
  /** Added with the runner running: every job called and its completion written (the table empty). */
  const burst = async (jobs: number) => {
    const calls0 = calls;
    const t0 = nowMs();
    await addInBatches(jobs);
    while (calls - calls0 < jobs || (await remaining()) > 0) await sleep(10);
    const seconds = (nowMs() - t0) / 1000;
    return { jobs, completed: calls - calls0, seconds, perSecond: (calls - calls0) / seconds };
  };
  return {
    async warmUp(jobs): Promise<WarmUpResult> {
      await start();
      const r = await burst(jobs);
      await runner!.stop();
      runner = undefined;
      await Promise.all([openAll(pool), openAll(addPool)]);
      return {
        jobs,
        completed: r.completed,
        seconds: r.seconds,
        how: 'a runner of the same config in the same process, added with addJobs while it runs, then stopped',
      };
    },
    async burst(jobs) {
      // The workers run before the clock starts (as the raw ceiling's connect before its burst).
      await start();
      return burst(jobs);
    },
    async prepare(jobs) {
      for (let i = 0; i < jobs; i += 1000) {
        await utils.addJobs(noopJobs(Math.min(1000, jobs - i)));
      }
      prepared = jobs;
    },
    async drain() {
      const t0 = nowMs();
      await start();
      while ((await remaining()) > 0) await sleep(10);
      const seconds = (nowMs() - t0) / 1000;
      return { jobs: prepared, completed: prepared, seconds, perSecond: prepared / seconds };
    },
    async paced(rate, jobs): Promise<PacedResult> {
      const lat: number[] = [];
      onStart = (p) => {
        if (typeof p.t === 'number') lat.push(nowMs() - p.t);
      };
      await start();
      const t0 = nowMs();
      const adds: Promise<unknown>[] = [];
      for (let i = 0; i < jobs; i++) {
        const due = t0 + (i * 1000) / rate;
        const wait = due - nowMs();
        if (wait > 0) await sleep(wait);
        adds.push(utils.addJob('noop', { t: nowMs() }));
      }
      await Promise.all(adds);
      for (const deadline = nowMs() + 30_000; lat.length < jobs && nowMs() < deadline;) await sleep(10);
      return { jobs, started: lat.length, rate, p50: percentile(lat, 50), p99: percentile(lat, 99) };
    },
    async close() {
      await runner?.stop();
      await utils.release();
      await pool.end();
      await addPool.end();
      await probe.end();
    },
  };
}
