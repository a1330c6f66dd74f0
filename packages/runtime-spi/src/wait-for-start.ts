import { sleep } from './abort.js';
import { RuntimeError } from './errors.js';

/**
 * How long `wait()` gives an instance still in `created` to be started (by a concurrent
 * `start()`, in this process or another) before it rejects with `not-started`. A caller that
 * re-adopts an instance whose starter died before starting it gets an answer, not a hang.
 */
export const START_GRACE_MS = 10_000;

export interface UntilStartedOptions {
  id: string;
  runtime: string;
  signal?: AbortSignal | undefined;
  graceMs?: number;
  pollMs?: number;
}

/**
 * Resolves once `stillCreated()` answers false; rejects with `not-started` when it still
 * answers true after the grace, or `aborted` when the signal fires. Every adapter's `wait()`
 * goes through it for an instance that has not started yet.
 * @example
 * await untilStarted(async () => (await inspect(id)).state === 'created', { id, runtime: 'docker' });
 */
export async function untilStarted(
  stillCreated: () => Promise<boolean>,
  opts: UntilStartedOptions,
): Promise<void> {
  const graceMs = opts.graceMs ?? START_GRACE_MS;
  const deadline = Date.now() + graceMs;
  while (await stillCreated()) {
    if (Date.now() >= deadline) {
      throw new RuntimeError(
        'not-started',
        `instance "${opts.id}" was never started (still created after ${graceMs} ms)`,
        { runtime: opts.runtime },
      );
    }
    await sleep(Math.min(opts.pollMs ?? 100, Math.max(1, deadline - Date.now())), opts.signal, opts.runtime);
  }
}
