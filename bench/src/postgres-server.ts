import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import pg from 'pg';
import { processRunNs } from './proc-cpu.js';
import { sleep } from './stats.js';

/** The Postgres server every peer shares (trust auth; the bench creates and drops its own databases). */
export const BENCH_POSTGRES_URL =
  process.env.RUNT_BENCH_POSTGRES_URL ??
  process.env.RUNT_TEST_POSTGRES_URL ??
  'postgres://postgres@127.0.0.1:5432/test';

export interface BenchDatabase {
  name: string;
  url: string;
  /** Pids of the server backends connected to this database right now. */
  backendPids(): Promise<number[]>;
  /** Drops the database (with force: a crashed peer's connections do not keep it). */
  drop(): Promise<void>;
}

async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: BENCH_POSTGRES_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/**
 * A fresh database on the shared server for one peer's measurement, so no peer sees another's
 * tables and each leaves nothing behind. Names start with `runt_bench_`.
 *
 * @example
 * const d = await createBenchDatabase('graphile'); try { … d.url … } finally { await d.drop() }
 */
export async function createBenchDatabase(peer: string): Promise<BenchDatabase> {
  const name = `runt_bench_${peer.replace(/[^a-z0-9]/g, '_')}_${randomBytes(4).toString('hex')}`;
  await withAdmin((c) => c.query(`create database ${name}`));
  const url = new URL(BENCH_POSTGRES_URL);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    backendPids: () =>
      withAdmin(async (c) =>
        (
          await c.query<{ pid: number }>('select pid from pg_stat_activity where datname = $1', [name])
        ).rows.map((r) => r.pid),
      ),
    drop: () => withAdmin(async (c) => void (await c.query(`drop database if exists ${name} with (force)`))),
  };
}

/**
 * One line on the shared server's state, printed before a Postgres measurement: every system
 * runs on a fresh database, but some server state is shared and slows them all (not their
 * ratios) — a session holding an old snapshot keeps every database's dead rows from being
 * pruned (`backend_xmin`), and with `autovacuum = off` (this machine's CI configuration)
 * nothing cleans up after a killed test. Read-only; never fails the bench.
 *
 * @example
 * console.log(await serverState()); // "postgres server: autovacuum off, 12 databases (…), oldest snapshot held 0 s, …"
 */
export async function serverState(): Promise<string> {
  try {
    return await withAdmin(async (c) => {
      const r = await c.query<{
        autovacuum: string;
        databases: number;
        leftover: number;
        xmin_age: number | null;
        xmin_s: number | null;
        idle_in_tx: number;
        sessions: number;
      }>(
        `select current_setting('autovacuum') as autovacuum,
                (select count(*)::int from pg_database where not datistemplate) as databases,
                (select count(*)::int from pg_database where datname like 'runt\\_bench\\_%' or datname like 'runt\\_test\\_%') as leftover,
                (select max(age(backend_xmin))::int from pg_stat_activity where pid <> pg_backend_pid()) as xmin_age,
                (select extract(epoch from now() - min(xact_start))::float8 from pg_stat_activity
                  where pid <> pg_backend_pid() and backend_xmin is not null) as xmin_s,
                (select count(*)::int from pg_stat_activity where state like 'idle in transaction%') as idle_in_tx,
                (select count(*)::int from pg_stat_activity where backend_type = 'client backend') - 1 as sessions`,
      );
      const s = r.rows[0]!;
      return (
        `postgres server: autovacuum ${s.autovacuum}, ${s.databases} databases (${s.leftover} runt_bench_/runt_test_), ` +
        `${s.sessions} other sessions (${s.idle_in_tx} idle in transaction), oldest snapshot held ` +
        `${s.xmin_s === null ? '-' : `${s.xmin_s.toFixed(0)} s`} (xmin age ${s.xmin_age ?? '-'} transactions)`
      );
    });
  } catch (e) {
    return `postgres server: state not read (${e instanceof Error ? e.message : String(e)})`;
  }
}

/**
 * What the shared server did around one measured phase ({@link ServerWindow}). Cluster-wide: it
 * holds whatever else wrote meanwhile (the bench lock keeps other benches out, not other
 * sessions' tests, whose every `DROP DATABASE` is a checkpoint).
 */
export interface ServerPhase {
  /** How the phase's start was evened out (BENCH_PG_SETTLE): `checkpoint` (default) or `none`. */
  settle: 'checkpoint' | 'none';
  /** How long the bench's own `CHECKPOINT` before the phase took, in ms (settle `checkpoint`). */
  checkpointMs?: number;
  /** Checkpoints the server started during the phase (pg_stat_bgwriter): none of them the bench's. */
  checkpoints: number;
  /** The last checkpoint's redo point is inside the phase: pages changed after it paid a full-page image again. */
  redoInside: boolean;
  /** WAL written in the phase (insert position before → flushed position after). */
  walBytes: number;
  /**
   * WAL records and the bytes of their full-page images in the phase (pg_walinspect's
   * pg_get_wal_stats over the phase's WAL); undefined when it could not be read (a checkpoint in
   * the phase may have recycled its first segments). pg_stat_wal's wal_fpi is not used: a
   * PostgreSQL 15 backend sends its counters at most once a second, an idle one after 10 s.
   */
  walRecords?: number;
  fpiBytes?: number;
  /** Buffers a backend had to write out itself to reuse them (neither bgwriter nor checkpoint had). */
  buffersBackend: number;
  /**
   * CPU milliseconds a fresh backend spent on a fixed statement just before the phase (the
   * machine's speed for the server's code, whatever its state): a phase whose database CPU per
   * job moves with this moved with the machine, not with the server.
   */
  probeMs?: number;
  /**
   * The disk under the server's data directory over the phase (/proc/diskstats, when the server
   * runs on this machine and its directory is readable): everything on that disk, the phase's WAL
   * and anyone else's writes and flushes alike.
   */
  disk?: DiskCounters & { ms: number };
  /** The machine's CPU over the phase (/proc/stat; the bench's own processes included). */
  machine?: MachineCpu;
}

/** The machine's CPU over the phase: cores busy on average, and of them those in niced processes. */
export interface MachineCpu {
  busyCores: number;
  /** Niced processes' share (`nice` of /proc/stat): the team's tests and builds run under `nice -n 19`, the bench does not. */
  nicedCores: number;
}

/** Clock ticks of the whole machine so far (/proc/stat's `cpu` line): busy, niced, all. */
function machineTicks(): { busy: number; nice: number; all: number } | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
    // user nice system idle iowait irq softirq steal
    const [user, nice, system, idle, iowait, irq, softirq, steal] = f as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    const busy = user + nice + system + irq + softirq + steal;
    return { busy, nice, all: busy + idle + iowait };
  } catch {
    return undefined;
  }
}

/** One block device's write-side counters (/proc/diskstats). */
export interface DiskCounters {
  writtenBytes: number;
  /** Flush requests completed (each `fdatasync` that reached the device). */
  flushes: number;
  /** Milliseconds the device had I/O in flight. */
  busyMs: number;
}

/** The counters of the device a directory lives on, or undefined (not on this machine, or not a listed device). */
export function diskCounters(dir: string): DiskCounters | undefined {
  try {
    const dev = statSync(dir).dev;
    const major = (dev & 0xfff00) >> 8;
    const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    for (const line of readFileSync('/proc/diskstats', 'utf8').split('\n')) {
      const f = line.trim().split(/\s+/);
      if (Number(f[0]) !== major || Number(f[1]) !== minor) continue;
      // After major, minor, name: … [9] sectors written (512 bytes), [12] ms with I/O in flight, [18] flushes.
      return { writtenBytes: Number(f[9]) * 512, busyMs: Number(f[12]), flushes: Number(f[18] ?? 0) };
    }
  } catch {
    // not readable here
  }
  return undefined;
}

const SETTLE = (process.env.BENCH_PG_SETTLE ?? 'checkpoint') as ServerPhase['settle'];
if (SETTLE !== 'checkpoint' && SETTLE !== 'none') {
  console.error(`BENCH_PG_SETTLE: checkpoint or none, not ${JSON.stringify(SETTLE)}`);
  process.exit(2);
}
/** The quiet pause after the bench's CHECKPOINT, before the phase's meters start. */
export const SETTLE_MS = 500;
/** The probe: ~0.1–0.2 s of one backend's CPU, reading and writing nothing. */
const PROBE_SQL = 'select sum(i) from generate_series(1, 1000000) i';

const MARK_SQL = `select pg_current_wal_insert_lsn()::text as lsn, (select redo_lsn::text from pg_control_checkpoint()) as redo,
       (b.checkpoints_timed + b.checkpoints_req)::float8 as checkpoints, b.buffers_backend::float8 as buffers_backend
  from pg_stat_bgwriter b`;
// PostgreSQL 17 moved the checkpoint counters to pg_stat_checkpointer and the backends' writes to pg_stat_io.
const MARK_SQL_17 = `select pg_current_wal_insert_lsn()::text as lsn, (select redo_lsn::text from pg_control_checkpoint()) as redo,
       (c.num_timed + c.num_requested)::float8 as checkpoints,
       (select coalesce(sum(writes), 0)::float8 from pg_stat_io where backend_type = 'client backend') as buffers_backend
  from pg_stat_checkpointer c`;
interface Mark {
  lsn: string;
  redo: string;
  checkpoints: number;
  buffers_backend: number;
}

interface WalDb {
  db: BenchDatabase;
  /** Connected to `db`, with pg_walinspect; undefined when the extension is not installed. */
  client: pg.Client | undefined;
}

/**
 * A database of the window's own with pg_walinspect (the extension is per database), dropped when
 * the window closes: nothing left behind by any caller, and its drop's checkpoint falls after the
 * phase, as each peer's own drop does.
 */
async function walDb(): Promise<WalDb> {
  const db = await createBenchDatabase('wal');
  const client = new pg.Client({ connectionString: db.url });
  try {
    await client.connect();
    await client.query('create extension if not exists pg_walinspect');
    return { db, client };
  } catch {
    await client.end().catch(() => {});
    return { db, client: undefined }; // not installed: the phases' WAL records go unread
  }
}

async function releaseWalDb(w: WalDb): Promise<void> {
  await w.client?.end().catch(() => {});
  await w.db.drop();
}

/**
 * The shared server's part of one measured phase, the same for every system on Postgres: just
 * before the phase's meters start, a CPU probe on a fresh backend and a `CHECKPOINT` (then
 * {@link SETTLE_MS} quiet), so every phase starts with no dirty buffer and pays a full-page image
 * for its first change to each page written before it — every system's phase alike, instead of
 * wherever the last checkpoint (each `DROP DATABASE` does one, any session's; the 5-minute timer)
 * happened to fall; then what the server did in the phase. BENCH_PG_SETTLE=none leaves the
 * checkpoint out (the rest stays), to measure what it changes.
 *
 * @example
 * const w = await ServerWindow.open(); …phase…; const s = await w.close(); // s.checkpoints: 0
 */
export class ServerWindow {
  private constructor(
    private readonly c: pg.Client,
    private readonly v17: boolean,
    private readonly before: Mark,
    private readonly checkpointMs: number | undefined,
    private readonly probeMs: number | undefined,
    private readonly dataDir: string | undefined,
    private readonly disk0: DiskCounters | undefined,
    private readonly t0: number,
    private readonly ticks0: ReturnType<typeof machineTicks>,
    private readonly wal: WalDb,
  ) {}

  private ended = false;

  static async open(settle: ServerPhase['settle'] = SETTLE): Promise<ServerWindow> {
    const wal = await walDb();
    const c = new pg.Client({ connectionString: BENCH_POSTGRES_URL });
    try {
      await c.connect();
      const [r] = (
        await c.query<{ pid: number; v: string; dir: string | null }>(
          `select pg_backend_pid() as pid, current_setting('server_version_num') as v,
                  current_setting('data_directory', true) as dir`,
        )
      ).rows;
      // The server runs on this machine (loopback): its backend's CPU from /proc, when visible.
      const ns0 = processRunNs(r!.pid);
      await c.query(PROBE_SQL);
      const ns1 = processRunNs(r!.pid);
      const probeMs = ns0 !== undefined && ns1 !== undefined ? (ns1 - ns0) / 1e6 : undefined;
      let checkpointMs: number | undefined;
      if (settle === 'checkpoint') {
        const t0 = performance.now();
        await c.query('checkpoint');
        checkpointMs = performance.now() - t0;
        await sleep(SETTLE_MS);
      }
      const v17 = Number(r!.v) >= 170000;
      const before = (await c.query<Mark>(v17 ? MARK_SQL_17 : MARK_SQL)).rows[0]!;
      const dataDir = r!.dir ?? undefined;
      const disk0 = dataDir ? diskCounters(dataDir) : undefined;
      return new ServerWindow(
        c,
        v17,
        before,
        checkpointMs,
        probeMs,
        dataDir,
        disk0,
        performance.now(),
        machineTicks(),
        wal,
      );
    } catch (e) {
      await c.end().catch(() => {});
      await releaseWalDb(wal);
      throw e;
    }
  }

  /** What the server did since `open` (call once, when the phase's last job is done). */
  async close(): Promise<ServerPhase> {
    try {
      const ms = performance.now() - this.t0;
      const disk1 = this.dataDir ? diskCounters(this.dataDir) : undefined;
      const ticks1 = machineTicks();
      const after = (await this.c.query<Mark>(this.v17 ? MARK_SQL_17 : MARK_SQL)).rows[0]!;
      const [w] = (
        await this.c.query<{ bytes: number; end: string; redo_inside: boolean }>(
          `select pg_wal_lsn_diff(pg_current_wal_flush_lsn(), $1::pg_lsn)::float8 as bytes,
                  pg_current_wal_flush_lsn()::text as end, $2::pg_lsn > $1::pg_lsn as redo_inside`,
          [this.before.lsn, after.redo],
        )
      ).rows;
      let records: { records: number; fpi_bytes: number } | undefined;
      const inspect = this.wal.client;
      if (inspect)
        try {
          records = (
            await inspect.query<{ records: number; fpi_bytes: number }>(
              `select coalesce(sum(count), 0)::float8 as records, coalesce(sum(fpi_size), 0)::float8 as fpi_bytes
                 from pg_get_wal_stats($1::pg_lsn, $2::pg_lsn, false)`,
              [this.before.lsn, w!.end],
            )
          ).rows[0];
        } catch {
          // the phase's first WAL segments recycled by a checkpoint in it: records unknown
        }
      return {
        settle: this.checkpointMs === undefined ? 'none' : 'checkpoint',
        ...(this.checkpointMs !== undefined ? { checkpointMs: this.checkpointMs } : {}),
        checkpoints: after.checkpoints - this.before.checkpoints,
        redoInside: w!.redo_inside,
        walBytes: w!.bytes,
        ...(records ? { walRecords: records.records, fpiBytes: records.fpi_bytes } : {}),
        buffersBackend: after.buffers_backend - this.before.buffers_backend,
        ...(this.probeMs !== undefined ? { probeMs: this.probeMs } : {}),
        ...(this.disk0 && disk1
          ? {
              disk: {
                writtenBytes: disk1.writtenBytes - this.disk0.writtenBytes,
                flushes: disk1.flushes - this.disk0.flushes,
                busyMs: disk1.busyMs - this.disk0.busyMs,
                ms,
              },
            }
          : {}),
        ...(this.ticks0 && ticks1 && ticks1.all > this.ticks0.all
          ? {
              machine: {
                // ticks of all CPUs ÷ (ticks of one over the window) = cores
                busyCores:
                  ((ticks1.busy - this.ticks0.busy) / (ticks1.all - this.ticks0.all)) * cpus().length,
                nicedCores:
                  ((ticks1.nice - this.ticks0.nice) / (ticks1.all - this.ticks0.all)) * cpus().length,
              },
            }
          : {}),
      };
    } finally {
      this.ended = true;
      await this.c.end();
      await releaseWalDb(this.wal);
    }
  }

  /** Leaves without counting (a phase that failed); nothing once closed. */
  async abandon(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.c.end().catch(() => {});
    await releaseWalDb(this.wal).catch(() => {});
  }
}

/**
 * One line on the server's part of a phase, volumes per job (or run).
 *
 * @example
 * describeServerPhase(s, 10_000) // "server: CHECKPOINT 9 ms + 500 ms quiet before; in it 0 checkpoints, WAL 1.21 kB/job (…)"
 */
export function describeServerPhase(s: ServerPhase, jobs: number, unit = 'job'): string {
  const per = (x: number, digits = 2) => (x / jobs).toFixed(digits);
  return (
    `server: ${s.settle === 'checkpoint' ? `CHECKPOINT ${s.checkpointMs!.toFixed(0)} ms + ${SETTLE_MS} ms quiet before` : 'no CHECKPOINT before'}; ` +
    `in it ${s.checkpoints} checkpoint${s.checkpoints === 1 ? '' : 's'}${s.redoInside ? ' (redo point inside: pages changed after it paid full-page images again)' : ''}, ` +
    `WAL ${per(s.walBytes / 1024)} kB/${unit}` +
    (s.walRecords !== undefined
      ? ` (${per(s.walRecords)} records, full-page images ${per(s.fpiBytes! / 1024)} kB/${unit})`
      : ' (records unread)') +
    `, backend buffer writes ${s.buffersBackend}` +
    (s.disk
      ? `; disk ${(s.disk.writtenBytes / 1024 / jobs).toFixed(2)} kB/${unit} written, ${per(s.disk.flushes)} flushes/${unit}, busy ${((100 * s.disk.busyMs) / s.disk.ms).toFixed(0)} % of the phase`
      : '') +
    (s.probeMs !== undefined ? `; CPU probe ${s.probeMs.toFixed(0)} ms` : '') +
    (s.machine
      ? `; machine ${s.machine.busyCores.toFixed(2)} of ${cpus().length} cores busy (niced ${s.machine.nicedCores.toFixed(2)})`
      : '')
  );
}
