import pg from 'pg';
import { Logger, makeWorkerUtils, run, type Runner } from 'graphile-worker';
import type { Peer, PacedResult } from './peer.js';
import { nowMs, percentile, sleep } from './stats.js';

const SCHEMA = 'graphile_worker';
const quietLogger = new Logger(() => () => {});

/**
 * graphile-worker 0.17 in its fastest mode: concurrency 16, a local queue of 10, batched
 * completion (`completeJobBatchDelay: 0`), a no-op task; the backlog goes in with `addJobs`.
 * Done = the jobs table is empty (completion is batched, so counting task calls is not enough).
 *
 * @example
 * const p = await graphilePeer(url); await p.prepare(1000); console.log(await p.drain()); await p.close();
 */
export async function graphilePeer(
  url: string,
  o: { concurrency?: number; localQueueSize?: number } = {},
): Promise<Peer> {
  const utils = await makeWorkerUtils({ connectionString: url, schema: SCHEMA });
  await utils.migrate();
  const probe = new pg.Client({ connectionString: url });
  await probe.connect();
  let onStart: (payload: { t?: number }) => void = () => {};
  let runner: Runner | undefined;
  let prepared = 0;
  const start = async () => {
    runner = await run({
      connectionString: url,
      schema: SCHEMA,
      concurrency: o.concurrency ?? 16,
      noHandleSignals: true,
      pollInterval: 2000,
      logger: quietLogger,
      taskList: { noop: async (payload) => onStart(payload as { t?: number }) },
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
  return {
    async prepare(jobs) {
      for (let i = 0; i < jobs; i += 1000) {
        await utils.addJobs(
          Array.from({ length: Math.min(1000, jobs - i) }, () => ({ identifier: 'noop', payload: {} })),
        );
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
      await probe.end();
    },
  };
}
