import { backoffDelay } from '@runt/protocol';

/**
 * Waits `ms`, or less when `signal` aborts; resolves `false` when it was cut short (never
 * rejects), so loops can write `if (!(await sleep(d, signal))) break`.
 *
 * @example
 * while (await sleep(1000, signal)) poll();
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(ok);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), Math.max(0, ms));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Exponential backoff with jitter for the agent's own loops (reconnect, poll, report retries):
 * attempt 1 waits about `baseMs`, doubling up to `capMs`, each delay drawn from its upper half.
 *
 * @example
 * await sleep(retryDelay(attempt++, 500, 30_000), signal);
 */
export function retryDelay(attempt: number, baseMs = 500, capMs = 30_000): number {
  return backoffDelay(Math.max(1, attempt), baseMs, capMs);
}

/** `ms` ± `fraction` (default 10%): spreads periodic timers of many agents apart. */
export function jitter(ms: number, fraction = 0.1): number {
  return Math.round(ms * (1 - fraction + Math.random() * 2 * fraction));
}
