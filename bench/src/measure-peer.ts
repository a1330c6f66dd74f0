import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PacedResult, WarmUpResult } from './peer.js';
import type { PeerTask } from './peer-host.js';
import { createBenchDatabase, ServerWindow, type ServerPhase } from './postgres-server.js';
import { CpuMeter, systemCpuSeconds } from './proc-cpu.js';
import type { DrainResult } from './raw-ceiling.js';
import { loadAverage } from './stats.js';

/** One peer measurement with the CPU it cost, split between its worker process and the database. */
export interface PeerMeasurement {
  task: Omit<PeerTask, 'url' | 'dataDir'>;
  /** Drain, or burst (mode `burst`: inserted while draining, timed from the first insert). */
  drain?: DrainResult;
  paced?: PacedResult;
  /** The untimed warm-up before it (task.warmup), in none of the figures. */
  warmup?: WarmUpResult;
  /** CPU milliseconds per job: the peer's process (on PGlite this includes the database). */
  cpuMsPerJob: {
    worker: number;
    database: number;
    /** Of `database`, its backends' time in the kernel (stime: sockets, WAL writes and fsyncs). */
    databaseSystem: number;
    total: number;
  };
  /** On Postgres: the shared server's part of the timed window (CHECKPOINT before it, WAL, checkpoints in it). */
  server?: ServerPhase;
  load: number;
}

/** A message from the peer's process. */
interface Reply {
  type: string;
  result?: DrainResult & PacedResult;
  warmup?: WarmUpResult;
}

/**
 * Runs one peer task in a child process on a fresh database (a new Postgres database, or a
 * PGlite data directory in tmp), reads the child's and its Postgres backends' CPU from /proc
 * around the timed part, then drops the database. Stops the child after `timeoutMs`.
 *
 * @example
 * const m = await measurePeer({ peer: 'raw', backend: 'pglite', mode: 'drain', jobs: 50 });
 */
export async function measurePeer(
  task: Omit<PeerTask, 'url' | 'dataDir'>,
  timeoutMs = 180_000,
): Promise<PeerMeasurement> {
  const db = task.backend === 'postgres' ? await createBenchDatabase(task.peer) : undefined;
  const dataDir = task.backend === 'pglite' ? mkdtempSync(join(tmpdir(), 'runt-bench-pglite-')) : undefined;
  const full: PeerTask = { ...task, ...(db ? { url: db.url } : {}), ...(dataDir ? { dataDir } : {}) };
  // From src/ (tests) and from dist/ alike: the built host.
  const child = fork(new URL('../dist/peer-host.js', import.meta.url), [], {
    env: { ...process.env, BENCH_PEER_TASK: JSON.stringify(full) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  let serverWindow: ServerWindow | undefined;
  try {
    const message = (type: string) =>
      new Promise<Reply>((resolve, reject) => {
        const onMessage = (m: Reply) => {
          if (m.type === type) {
            child.off('message', onMessage);
            resolve(m);
          }
        };
        child.on('message', onMessage);
        void exited.then((code) =>
          reject(new Error(`${task.peer} on ${task.backend} exited (${code}) before '${type}'`)),
        );
      });
    const { warmup } = await message('ready');
    // The server's state evened out before the meters start (CHECKPOINT, postgres-server.ts).
    serverWindow = db ? await ServerWindow.open() : undefined;
    const worker = new CpuMeter();
    const database = new CpuMeter();
    const databaseSystem = new CpuMeter(systemCpuSeconds);
    worker.start([child.pid!]);
    const pids0 = db ? await db.backendPids() : [];
    database.start(pids0);
    databaseSystem.start(pids0);
    const load = loadAverage();
    child.send('go');
    const { result } = await message('result');
    worker.sample([child.pid!]);
    if (db) {
      const pids = await db.backendPids();
      database.sample(pids);
      databaseSystem.sample(pids);
    }
    const server = await serverWindow?.close();
    child.send('close');
    await exited;
    const jobs = result!.jobs;
    const per = (s: number) => (s * 1000) / jobs;
    return {
      task,
      ...(task.mode === 'paced' ? { paced: result! } : { drain: result! }),
      ...(warmup ? { warmup } : {}),
      cpuMsPerJob: {
        worker: per(worker.seconds()),
        database: per(database.seconds()),
        databaseSystem: per(databaseSystem.seconds()),
        total: per(worker.seconds() + database.seconds()),
      },
      ...(server ? { server } : {}),
      load,
    };
  } finally {
    clearTimeout(timer);
    await serverWindow?.abandon();
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    await db?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }
}
