// A child process that runs one peer for one measurement, so the bench can read its CPU alone
// from /proc. Protocol over IPC: the child sends {type:'ready'} once the backlog is loaded (or
// the workers are about to start; after the untimed warm-up, which it reports), the parent answers 'go', the child sends {type:'result'},
// the parent reads the CPU figures and sends 'close', and the child closes and exits.
import { graphilePeer } from './graphile-peer.js';
import { pgBossPeer } from './pgboss-peer.js';
import type { Peer } from './peer.js';
import { rawCeilingPeer } from './raw-ceiling.js';

export interface PeerTask {
  peer: 'raw' | 'graphile' | 'pgboss';
  backend: 'postgres' | 'pglite';
  url?: string;
  dataDir?: string;
  mode: 'drain' | 'burst' | 'paced';
  jobs: number;
  rate?: number;
  /** raw on PGlite: commits do not wait for the disk (see RawCeilingOptions.unsynced). */
  unsynced?: boolean;
  /** Untimed warm-up jobs before the measured phase (BENCH_WARMUP; 0 or absent: none). */
  warmup?: number;
}

/** Creates the peer a task names. */
export async function openPeer(t: PeerTask): Promise<Peer> {
  if (t.peer === 'raw')
    return rawCeilingPeer({
      backend: t.backend,
      ...(t.url ? { url: t.url } : {}),
      ...(t.dataDir ? { dataDir: t.dataDir } : {}),
      workers: 4,
      ...(t.unsynced ? { unsynced: true } : {}),
    });
  if (t.backend !== 'postgres' || !t.url) throw new Error(`${t.peer} runs on Postgres only`);
  return t.peer === 'graphile' ? graphilePeer(t.url) : pgBossPeer(t.url);
}

async function main(): Promise<void> {
  const task = JSON.parse(process.env.BENCH_PEER_TASK!) as PeerTask;
  const peer = await openPeer(task);
  const messages: string[] = [];
  const waiters: Array<() => void> = [];
  process.on('message', (m: string) => {
    messages.push(m);
    waiters.shift()?.();
  });
  const next = () =>
    messages.length > 0
      ? Promise.resolve(messages.shift())
      : new Promise<void>((r) => waiters.push(r)).then(() => messages.shift());
  // The warm-up before the backlog and before 'ready': the parent's CPU meters start at 'go'.
  const warmup = task.warmup && task.warmup > 0 ? await peer.warmUp?.(task.warmup, task.mode) : undefined;
  if (task.mode === 'drain') await peer.prepare(task.jobs);
  process.send!({ type: 'ready', ...(warmup ? { warmup } : {}) });
  await next(); // 'go'
  const result =
    task.mode === 'drain'
      ? await peer.drain()
      : task.mode === 'burst'
        ? await peer.burst!(task.jobs)
        : await peer.paced!(task.rate ?? 50, task.jobs);
  process.send!({ type: 'result', result });
  await next(); // 'close': the parent has read the CPU of this process and its backends
  await peer.close();
  process.disconnect();
}

if (process.env.BENCH_PEER_TASK) {
  main().catch((e: unknown) => {
    process.stderr.write(`peer-host: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
}
