/**
 * Parses an HTTP `Retry-After` header (delay-seconds or an HTTP date) into milliseconds from
 * `nowMs`; `undefined` when absent or unparsable. Negative results (a date in the past) become 0.
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

/** Backoff policy of the lease client's retries. */
export interface BackoffOptions {
  /** First delay before jitter (default 200 ms); doubles on every further attempt. */
  baseMs?: number;
  /** No computed delay exceeds this (default 10 s). A longer `Retry-After` is still honoured. */
  capMs?: number;
  /** Source of randomness in [0, 1) (default `Math.random`). */
  random?: () => number;
}

/**
 * Delay before retry number `attempt` (0 for the first retry): exponential with "equal jitter"
 * (half fixed, half random), capped at `capMs`, and never shorter than the server's
 * `retryAfterMs` when it sent one.
 *
 * @example
 * backoffDelay(3, 1000); // ≥ 1000, ≤ 10_000
 */
export function backoffDelay(attempt: number, retryAfterMs?: number, opts: BackoffOptions = {}): number {
  const base = opts.baseMs ?? 200;
  const cap = opts.capMs ?? 10_000;
  const random = opts.random ?? Math.random;
  const exp = Math.min(cap, base * 2 ** Math.min(attempt, 30));
  const jittered = exp / 2 + (exp / 2) * random();
  return Math.max(retryAfterMs ?? 0, Math.round(jittered));
}
