import PgBoss from 'pg-boss';
import type { Peer, PacedResult, WarmUpResult } from './peer.js';
import { nowMs, percentile, sleep } from './stats.js';

const QUEUE = 'noop';

/**
 * pg-boss 10.4 with batches of 10. Drain: `loops` concurrent `fetch(batchSize 10)` +
 * `complete(ids)` loops (pg-boss's `work()` waits its polling interval, ≥ 500 ms, after each
 * batch, so the loops are its fastest way through a backlog). Paced: `work()` with batches of
 * 10 at the shortest polling interval pg-boss accepts (0.5 s), `loops` workers, as an
 * application runs it.
 *
 * @example
 * const p = await pgBossPeer(url); await p.prepare(1000); console.log(await p.drain()); await p.close();
 */
export async function pgBossPeer(url: string, o: { loops?: number; batchSize?: number } = {}): Promise<Peer> {
  const boss = new PgBoss({
    connectionString: url,
    schema: 'pgboss',
    supervise: false,
    schedule: false,
    max: (o.loops ?? 4) + 2,
  });
  boss.on('error', () => {});
  await boss.start();
  await boss.createQueue(QUEUE);
  const batchSize = o.batchSize ?? 10;
  let prepared = 0;
  const peer: Peer = {
    async warmUp(jobs): Promise<WarmUpResult> {
      // The drain's loops through a backlog of `jobs` (untimed), then nothing is left queued.
      await peer.prepare(jobs);
      const r = await peer.drain();
      prepared = 0;
      return {
        jobs,
        completed: r.completed,
        seconds: r.seconds,
        how: 'a backlog its fetch + complete loops drain',
      };
    },
    async prepare(jobs) {
      for (let i = 0; i < jobs; i += 1000) {
        await boss.insert(
          Array.from({ length: Math.min(1000, jobs - i) }, () => ({ name: QUEUE, data: {} })),
        );
      }
      prepared = jobs;
    },
    async drain() {
      let completed = 0;
      const t0 = nowMs();
      await Promise.all(
        Array.from({ length: o.loops ?? 4 }, async () => {
          for (;;) {
            const jobs = await boss.fetch(QUEUE, { batchSize });
            if (jobs.length === 0) return;
            await boss.complete(
              QUEUE,
              jobs.map((j) => j.id),
            );
            completed += jobs.length;
          }
        }),
      );
      const seconds = (nowMs() - t0) / 1000;
      return { jobs: prepared, completed, seconds, perSecond: completed / seconds };
    },
    async paced(rate, jobs): Promise<PacedResult> {
      const lat: number[] = [];
      // As many workers as the drain's loops: one worker takes at most 10 jobs per 0.5 s poll
      // (20/s), below the paced rate, and its queue would only grow.
      for (let w = 0; w < (o.loops ?? 4); w++) {
        await boss.work<{ t: number }>(QUEUE, { batchSize, pollingIntervalSeconds: 0.5 }, async (batch) => {
          const now = nowMs();
          for (const j of batch) lat.push(now - j.data.t);
        });
      }
      const t0 = nowMs();
      const sends: Promise<unknown>[] = [];
      for (let i = 0; i < jobs; i++) {
        const due = t0 + (i * 1000) / rate;
        const wait = due - nowMs();
        if (wait > 0) await sleep(wait);
        sends.push(boss.send(QUEUE, { t: nowMs() }));
      }
      await Promise.all(sends);
      for (const deadline = nowMs() + 30_000; lat.length < jobs && nowMs() < deadline;) await sleep(10);
      return { jobs, started: lat.length, rate, p50: percentile(lat, 50), p99: percentile(lat, 99) };
    },
    async close() {
      await boss.stop({ graceful: false, wait: true, close: true });
    },
  };
  return peer;
}
