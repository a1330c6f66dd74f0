/**
 * The one retry policy of runt's clients: exponential backoff with jitter, the `Retry-After`
 * parser and an abortable sleep. `HttpTransport` (and through it `ControlPlaneClient`, event
 * following and `@runt/leases`' `LeaseClient`), the lease renew loop and the agent's own loops
 * all wait through these functions.
 */

/** Backoff policy: first delay, ceiling and the source of randomness. */
export interface BackoffOptions {
  /** Delay of the first retry before jitter (default 250 ms); doubles on every further attempt. */
  baseMs?: number;
  /** No computed delay exceeds this (default 30 s). A longer `Retry-After` is still honoured. */
  capMs?: number;
  /** Source of randomness in [0, 1) (default `Math.random`). */
  random?: () => number;
  /**
   * `equal` (default): the delay is drawn from the upper half of the ceiling, never shorter than
   * half of it. `full`: drawn from the whole of [0, ceiling] — what a fleet reconnecting to one
   * server at once wants, since its retries spread evenly over the window instead of bunching in
   * its second half (the link's reconnects, issue 9).
   */
  jitter?: 'equal' | 'full';
}

/**
 * Delay before retry number `attempt` (1 for the first retry): `baseMs · 2^(attempt−1)` capped at
 * `capMs`, with "equal jitter" (the upper half of that ceiling, drawn at random; `jitter: 'full'`
 * draws from all of it), and never shorter than the server's `retryAfterMs` when it sent one.
 *
 * @example
 * backoffDelay(1);                                  // 125..250 ms
 * backoffDelay(3, { baseMs: 500, capMs: 30_000 });  // 1000..2000 ms
 * backoffDelay(3, { baseMs: 500, jitter: 'full' }); // 0..2000 ms
 * backoffDelay(1, { retryAfterMs: 2_000 });         // 2000 ms
 */
export function backoffDelay(
  attempt: number,
  opts: BackoffOptions & { retryAfterMs?: number | undefined } = {},
): number {
  const base = opts.baseMs ?? 250;
  const cap = opts.capMs ?? 30_000;
  const random = opts.random ?? Math.random;
  const ceiling = Math.min(cap, base * 2 ** Math.min(30, Math.max(0, attempt - 1)));
  const jittered = Math.round(
    opts.jitter === 'full' ? ceiling * random() : ceiling / 2 + (ceiling / 2) * random(),
  );
  return Math.max(opts.retryAfterMs ?? 0, jittered);
}

/**
 * Parses an HTTP `Retry-After` header (delay-seconds or an HTTP date) into milliseconds from
 * `nowMs`; `undefined` when absent or unparsable. A date in the past becomes 0.
 *
 * @example
 * parseRetryAfter('2'); // 2000
 */
export function parseRetryAfter(value: string | null | undefined, nowMs = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/**
 * Waits `ms`, or less when `signal` aborts; resolves `false` when it was cut short and never
 * rejects, so loops can write `if (!(await sleep(d, signal))) break`.
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
 * `ms` ± `fraction` (default 10%): spreads periodic timers of many clients apart.
 *
 * @example
 * setTimeout(poll, jitter(15_000)); // 13.5..16.5 s
 */
export function jitter(ms: number, fraction = 0.1, random: () => number = Math.random): number {
  return Math.round(ms * (1 - fraction + random() * 2 * fraction));
}
