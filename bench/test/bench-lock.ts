import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { afterAll, beforeAll } from 'vitest';

/** The lock every bench run is taken under (`flock /tmp/runt-bench.lock <cmd>`, /tmp/common.md). */
export const BENCH_LOCK = '/tmp/runt-bench.lock';

/**
 * Takes `flock(1)`'s lock on `file` (made if it does not exist yet) and resolves, once it is
 * held, with its release. The lock is the one benches take from the shell, held by a `flock`
 * child that keeps it until its stdin closes: at the release, or when this process ends however
 * it ends, so a crashed test never leaves it held. Waits for a bench holding it (≤ 4 min each).
 *
 * @example
 * const release = await holdBenchLock();
 * try { await checkpointAndMeasure(); } finally { await release(); }
 */
export async function holdBenchLock(file = BENCH_LOCK): Promise<() => Promise<void>> {
  const child = spawn('flock', [file, '-c', 'echo held; exec cat >/dev/null'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit');
  const held = new Promise<void>((resolve, reject) => {
    child.once('error', (e) => reject(new Error(`cannot take the bench lock ${file}: ${e.message}`)));
    child.stdout.once('data', () => resolve());
    void exited.then(([code]) => reject(new Error(`the bench lock ${file}: flock exited ${String(code)}`)));
  });
  await held;
  return async () => {
    child.stdin.end();
    await exited;
  };
}

/**
 * Holds the bench lock over the rest of the enclosing `describe` (or file): for tests that
 * `CHECKPOINT` or drop databases on the shared Postgres server, which would otherwise land inside
 * a bench's measured phase. Waits up to 5 minutes for the lock (a bench holds it ≤ 4).
 */
export function useBenchLock(file = BENCH_LOCK): void {
  let release: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    release = await holdBenchLock(file);
  }, 300_000);
  afterAll(async () => {
    await release?.();
  });
}
