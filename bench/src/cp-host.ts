// The control plane as its own process for the bench: the same startControlPlane as
// `runt-control-plane`, on the database the bench names, with two bench-only meters around it:
// every SQL statement through its Database (BEGIN/COMMIT of a transaction count as two) and
// every link message its WebSockets send or receive. Config in BENCH_CP (JSON); reports over IPC.
import { createWriteStream, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { createRequire } from 'node:module';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { writeHeapSnapshot } from 'node:v8';
import { loadConfig, startControlPlane } from '@runt/control-plane';
import {
  countStatements,
  openPglite,
  openPostgres,
  type Database,
  type Queryable,
  type UpkeepDone,
  type UpkeepOptions,
} from '@runt/sql';
import { mintToken } from '@runt/transport-auth';

export interface CpHostConfig {
  backend: 'postgres' | 'pglite';
  url?: string;
  /** The control plane's data directory (PGlite keeps its files in `<dataDir>/db`, as `runt-control-plane` does). */
  dataDir: string;
  /** A fixed port (the chaos suite restarts the control plane on the same address); 0 by default. */
  port?: number;
  /** A fixed admin token (kept across the chaos suite's restarts); minted by default. */
  adminToken?: string;
  /** Append the control plane's JSON logs (level info) to this file; discarded by default. */
  logFile?: string;
}

/** What the meters counted since the process started. */
export interface CpCounts {
  statements: number;
  /**
   * Round trips to the database (`countStatements`): as `statements`, less each `BEGIN` that
   * rode with its transaction's first statement and each statement sent with a `COMMIT`.
   */
  roundTrips: number;
  transactions: number;
  linkSent: number;
  linkReceived: number;
  /** Statements by their first words (whitespace collapsed, 48 characters), for the SQL mix. */
  byStatement: Record<string, number>;
  /** Event-loop delay since the previous `counts` (ms): how long ready work waited for the thread. */
  eventLoop?: { p99Ms: number; maxMs: number };
}

export type CpHostRequest =
  | { type: 'counts' }
  | { type: 'query'; sql: string; params?: unknown[] }
  /** After a full GC when the process runs with --expose-gc: its `process.memoryUsage()`. */
  | { type: 'memory' }
  /** A V8 heap snapshot written to `file` (what the idle links' JS memory is made of). */
  | { type: 'heap-snapshot'; file: string }
  /**
   * A CPU profile of one window (a phase): `start` begins it, `stop` writes it to `file`
   * (`.cpuprofile`), so a phase's profile holds only that phase (not start-up, not the submits
   * of a drain's backlog).
   */
  | { type: 'profile'; action: 'start' }
  | { type: 'profile'; action: 'stop'; file: string };

const counts: CpCounts = {
  statements: 0,
  roundTrips: 0,
  transactions: 0,
  linkSent: 0,
  linkReceived: 0,
  byStatement: {},
};

/** The SQL mix's key of a statement text (first words), computed once per distinct text. */
const keys = new Map<string, string>();
const keyOf = (text: string): string => {
  let key = keys.get(text);
  if (key === undefined) {
    // The hot statements are a few constant texts: the regex over them once, not per statement
    // (it was 1.6 % of the control plane's self time in the profile, all of it the meter's).
    key = text.replace(/\s+/g, ' ').trim().slice(0, 48);
    if (keys.size < 10_000) keys.set(text, key);
  }
  return key;
};

/** A Database that counts every statement on its way to `db`. */
function counting(db: Database): Database {
  const count = (text: string) => {
    counts.statements++;
    const key = keyOf(text);
    counts.byStatement[key] = (counts.byStatement[key] ?? 0) + 1;
  };
  const wrap = (q: Queryable): Queryable => {
    const w: Queryable = {
      query: (text, params) => {
        count(text);
        return q.query(text, params);
      },
    };
    // Passed on, so the control plane under the bench sends its pipelines and its last
    // statements with their COMMITs as it does unwrapped (without them it fell back to a round
    // trip per statement: a pass's lock and page went apart, before 2026-12-01 11:40).
    if (q.pipeline) {
      const inner = q.pipeline.bind(q);
      w.pipeline = (statements) => {
        for (const s of statements) count(s.text);
        return inner(statements);
      };
    }
    if (q.commitWith) {
      const inner = q.commitWith.bind(q);
      w.commitWith = (statement) => {
        count(statement.text);
        return inner(statement);
      };
    }
    if (q.atCommit) {
      const inner = q.atCommit.bind(q);
      w.atCommit = (text) => {
        count(text);
        inner(text);
      };
    }
    return w;
  };
  const direct = wrap(db);
  const counted: Database = {
    backend: db.backend,
    query: (text, params) => direct.query(text, params),
    transaction: (fn) => {
      counts.statements += 2;
      counts.transactions++;
      return db.transaction((tx) => fn(wrap(tx)));
    },
    close: () => db.close(),
    get priority() {
      return priority;
    },
  };
  // The priority lane is counted too (its own lane is itself).
  const priority = db.priority === db ? counted : counting(db.priority);
  if (db.listen) counted.listen = db.listen.bind(db);
  if (direct.pipeline) counted.pipeline = direct.pipeline.bind(direct);
  return counted;
}

/** Counts link messages on the `ws` module instance the control plane itself loads. */
function countLinkMessages(): void {
  const require = createRequire(import.meta.resolve('@runt/control-plane'));
  const WebSocket = require('ws') as {
    prototype: { send: (...a: unknown[]) => unknown; emit: (event: string, ...a: unknown[]) => boolean };
  };
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (this: unknown, ...a: unknown[]) {
    counts.linkSent++;
    return send.apply(this, a);
  };
  const emit = WebSocket.prototype.emit;
  WebSocket.prototype.emit = function (this: unknown, event: string, ...a: unknown[]) {
    if (event === 'message') counts.linkReceived++;
    return emit.call(this, event, ...a);
  };
}

let profiler: Session | undefined;

/** Starts or stops (writing it out) the in-process CPU profile of a window. */
async function profileWindow(m: Extract<CpHostRequest, { type: 'profile' }>): Promise<void> {
  if (m.action === 'start') {
    profiler ??= new Session();
    profiler.connect();
    await profiler.post('Profiler.enable');
    await profiler.post('Profiler.setSamplingInterval', { interval: 1000 });
    await profiler.post('Profiler.start');
    return;
  }
  if (!profiler) throw new Error('no profile started');
  const { profile } = await profiler.post('Profiler.stop');
  profiler.disconnect();
  profiler = undefined;
  writeFileSync(m.file, JSON.stringify(profile));
}

/**
 * PGlite's table upkeep (`openPglite`'s `upkeep`): BENCH_PGLITE_UPKEEP=off switches it off (an
 * A/B in one build), a JSON object sets its options; BENCH_UPKEEP_LOG=1 prints each VACUUM or
 * ANALYZE it ran (table, rows, dead rows, ms) to stderr.
 */
function pgliteUpkeep(): UpkeepOptions | false {
  const env = process.env.BENCH_PGLITE_UPKEEP;
  if (env === 'off') return false;
  const log = process.env.BENCH_UPKEEP_LOG
    ? (d: UpkeepDone) =>
        process.stderr.write(
          `cp-host upkeep: ${d.action} ${d.table} rows ${d.rows} dead ${d.deadRows} changed ${d.changedSinceAnalyze} in ${d.ms.toFixed(1)} ms\n`,
        )
    : undefined;
  return { ...(env ? (JSON.parse(env) as UpkeepOptions) : {}), ...(log ? { onUpkeep: log } : {}) };
}

const imported = performance.now();

const loopDelay = monitorEventLoopDelay({ resolution: 10 });

async function main(): Promise<void> {
  const c = JSON.parse(process.env.BENCH_CP!) as CpHostConfig;
  loopDelay.enable();
  countLinkMessages();
  const raw =
    c.backend === 'postgres'
      ? await openPostgres({ url: c.url! })
      : await openPglite({ dataDir: `${c.dataDir}/db`, upkeep: pgliteUpkeep() });
  const opened = performance.now();
  const adminToken = c.adminToken ?? mintToken('admin');
  const cp = await startControlPlane(
    loadConfig(
      {},
      {
        host: '127.0.0.1',
        port: c.port ?? 0,
        adminToken,
        dataDir: c.dataDir,
        logLevel: c.logFile ? 'info' : 'error',
      },
    ),
    {
      db: counting(countStatements(raw, (n) => (counts.roundTrips += n.roundTrips))),
      // BENCH_LINK_MAX_OPENING: links opening at once (the control plane's default otherwise).
      ...(process.env.BENCH_LINK_MAX_OPENING
        ? { linkMaxOpening: Number(process.env.BENCH_LINK_MAX_OPENING) }
        : {}),
      logDestination: c.logFile
        ? createWriteStream(c.logFile, { flags: 'a' })
        : new Writable({ write: (_c, _e, cb) => cb() }),
    },
  );
  process.on('message', (m: CpHostRequest & { id: number }) => {
    if (m.type === 'counts') {
      const eventLoop = { p99Ms: loopDelay.percentile(99) / 1e6, maxMs: loopDelay.max / 1e6 };
      loopDelay.reset();
      process.send!({ id: m.id, counts: { ...counts, eventLoop } });
    } else if (m.type === 'profile') {
      profileWindow(m).then(
        () => process.send!({ id: m.id, rows: [] }),
        (e: unknown) => process.send!({ id: m.id, error: e instanceof Error ? e.message : String(e) }),
      );
    } else if (m.type === 'memory') {
      (globalThis as { gc?: () => void }).gc?.();
      process.send!({ id: m.id, memory: process.memoryUsage() });
    } else if (m.type === 'heap-snapshot') {
      process.send!({ id: m.id, file: writeHeapSnapshot(m.file), rows: [] });
    }
    // The bench's own reads (progress, timestamps) go around the meter.
    else
      raw.query(m.sql, m.params).then(
        (r) => process.send!({ id: m.id, rows: r.rows }),
        (e: unknown) => process.send!({ id: m.id, error: e instanceof Error ? e.message : String(e) }),
      );
  });
  process.once('SIGTERM', () => {
    cp.close().then(
      () => raw.close().then(() => process.exit(0)),
      () => process.exit(1),
    );
  });
  if (process.env.BENCH_CP_TRACE)
    process.stderr.write(
      `cp-host: modules loaded at ${Math.round(imported)} ms, database open at ${Math.round(opened)} ms, ready at ${Math.round(performance.now())} ms after start\n`,
    );
  process.send!({ type: 'ready', url: cp.url, adminToken });
}

if (process.env.BENCH_CP) {
  main().catch((e: unknown) => {
    process.stderr.write(`cp-host: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
}
