import pg from 'pg';
import { openPglite, type Queryable } from '@runt/sql';
import type { Peer, WarmUpResult } from './peer.js';
import { nowMs } from './stats.js';

/** What one drain measured. */
export interface DrainResult {
  jobs: number;
  /** Jobs completed (claimed and completed under their fencing token). */
  completed: number;
  seconds: number;
  perSecond: number;
}

const SCHEMA = `
create table if not exists bench_jobs (
  id bigserial primary key,
  status text not null default 'queued',
  token bigint not null default 0,
  locked_at timestamptz,
  payload jsonb not null default '{}'
);
create index if not exists bench_jobs_queued on bench_jobs (id) where status = 'queued';`;

/** The claim: the oldest queued job, skipping rows other workers hold, with a new fencing token. */
const CLAIM = `
update bench_jobs j set status = 'running', token = j.token + 1, locked_at = now()
  from (select id from bench_jobs where status = 'queued' order by id limit 1 for update skip locked) c
 where j.id = c.id
returning j.id, j.token`;

/** The fenced complete: only the holder of the current token may finish the job. */
const COMPLETE = `update bench_jobs set status = 'done', locked_at = null where id = $1 and token = $2 and status = 'running'`;

export interface RawCeilingOptions {
  backend: 'postgres' | 'pglite';
  /** Postgres: the database URL (a fresh one per measurement). */
  url?: string;
  /** PGlite: the data directory (omit: in memory). */
  dataDir?: string;
  /** Claiming workers, each its own connection on Postgres (on PGlite they share the one). */
  workers: number;
  /**
   * PGlite: commit without waiting for the disk (`synchronous_commit = off` for the session): the
   * CPU ceiling of claim + complete, which issue 9's PGlite target (≥ 0.5×) was set against when
   * PGlite's syncs never reached the disk. Default: every commit synced, as `openPglite` does and
   * as runt's are — bound by the disk's sync latency, since each claim, complete and insert
   * commits on its own (docs/benchmarks.md, decisions).
   */
  unsynced?: boolean;
}

/**
 * The raw ceiling: `workers` loops that each claim one job with `FOR UPDATE SKIP LOCKED` and
 * complete it with a fenced update, one statement each, unbatched; no framework around it.
 * `prepare()` loads the backlog, `drain()` times claiming and completing all of it; `burst()`
 * times inserting jobs one per statement (from `workers` more connections) while the workers
 * claim and complete them, from the first insert to the last complete.
 *
 * @example
 * const c = await rawCeilingPeer({ backend: 'pglite', workers: 4 });
 * await c.prepare(50); const r = await c.drain(); await c.close();
 */
export async function rawCeilingPeer(o: RawCeilingOptions): Promise<Peer> {
  let conns: Queryable[];
  let close: () => Promise<void>;
  if (o.backend === 'postgres') {
    // The workers' connections, then (burst) as many for the inserts, all open before the clock.
    const clients = Array.from({ length: 2 * o.workers }, () => new pg.Client({ connectionString: o.url }));
    await Promise.all(clients.map((c) => c.connect()));
    conns = clients.map((c) => ({
      query: async (text, params) => {
        const r = await c.query(text, params);
        return { rows: r.rows, rowCount: r.rowCount ?? 0 };
      },
    }));
    close = async () => void (await Promise.all(clients.map((c) => c.end())));
  } else {
    // BENCH_PGLITE_UPKEEP=off: without the table upkeep, as the control plane's (cp-host.ts).
    const upkeep = process.env.BENCH_PGLITE_UPKEEP === 'off' ? { upkeep: false as const } : {};
    const db = await openPglite({ ...(o.dataDir ? { dataDir: o.dataDir } : {}), ...upkeep });
    // A session setting of the one connection: its WAL is still written (and synced when a
    // segment fills, and at checkpoints), a commit just does not wait for it.
    if (o.unsynced) await db.query('set synchronous_commit = off');
    conns = Array.from({ length: 2 * o.workers }, () => db);
    close = () => db.close();
  }
  const inserters = conns.slice(o.workers);
  conns = conns.slice(0, o.workers);
  const first = conns[0]!;
  for (const stmt of SCHEMA.split(';')
    .map((s) => s.trim())
    .filter(Boolean))
    await first.query(stmt);
  let prepared = 0;
  const peer: Peer = {
    async warmUp(jobs, mode): Promise<WarmUpResult> {
      // The same workers and statements as the measured phase: a burst's inserts while they
      // claim, or a backlog they drain. Its rows stay (status 'done', as a drain leaves them);
      // the measured drain claims only queued rows and counts only its own backlog.
      let r: DrainResult;
      if (mode === 'burst') r = await peer.burst!(jobs);
      else {
        await peer.prepare(jobs);
        r = await peer.drain();
        prepared = 0;
      }
      return {
        jobs,
        completed: r.completed,
        seconds: r.seconds,
        how: mode === 'burst' ? 'inserted while its 4 workers claim' : 'a backlog its 4 workers drain',
      };
    },
    async prepare(jobs) {
      await first.query(
        `insert into bench_jobs (payload) select '{}'::jsonb from generate_series(1, $1::int)`,
        [jobs],
      );
      prepared += jobs;
      await first.query('analyze bench_jobs');
    },
    async drain() {
      let completed = 0;
      const started = nowMs();
      await Promise.all(
        conns.map(async (c) => {
          for (;;) {
            const claimed = await c.query<{ id: string; token: string }>(CLAIM);
            const job = claimed.rows[0];
            if (!job) return;
            const done = await c.query(COMPLETE, [job.id, job.token]);
            completed += done.rowCount;
          }
        }),
      );
      const seconds = (nowMs() - started) / 1000;
      return { jobs: prepared, completed, seconds, perSecond: completed / seconds };
    },
    async burst(jobs) {
      // As many inserting connections as workers, one job per statement (committed
      // synchronously, as the claims and completes are), while the workers claim and complete;
      // a worker that finds the queue empty before the inserts are done waits 1 ms.
      let completed = 0;
      let inserted = 0;
      let inserting = true;
      const started = nowMs();
      const insert = Promise.all(
        inserters.map(async (c) => {
          while (inserted < jobs) {
            inserted++;
            await c.query(`insert into bench_jobs (payload) values ('{}'::jsonb)`);
          }
        }),
      ).finally(() => (inserting = false));
      await Promise.all([
        insert,
        ...conns.map(async (c) => {
          for (;;) {
            const claimed = await c.query<{ id: string; token: string }>(CLAIM);
            const job = claimed.rows[0];
            if (!job) {
              if (!inserting) return;
              await new Promise((r) => setTimeout(r, 1));
              continue;
            }
            const done = await c.query(COMPLETE, [job.id, job.token]);
            completed += done.rowCount;
          }
        }),
      ]);
      const seconds = (nowMs() - started) / 1000;
      return { jobs, completed, seconds, perSecond: completed / seconds };
    },
    close,
  };
  return peer;
}
