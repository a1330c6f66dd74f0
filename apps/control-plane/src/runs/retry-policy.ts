import type { FailureKind, RetryPolicy } from '@runt/protocol';

/** How an attempt failed, as far as a retry policy looks at it. */
export interface FailedAttempt {
  failureKind?: FailureKind | undefined;
  exitCode?: number | undefined;
}

/** What of a run the decision needs. */
export interface RetryState {
  attempt: number;
  max_attempts: number;
  cancel_requested: boolean;
  retry: RetryPolicy | null;
}

/**
 * True when `policy` retries this failure: its failure kind is listed (`nonzero-exit`,
 * `runner-lost`, `timeout`), or it is a `nonzero-exit` whose exit code is listed.
 *
 * @example
 * retries({ on: [137], backoff }, { failureKind: 'nonzero-exit', exitCode: 137 }); // true
 */
export function retries(policy: RetryPolicy | null, f: FailedAttempt): boolean {
  if (!policy || !f.failureKind) return false;
  switch (f.failureKind) {
    case 'nonzero-exit':
      return (
        policy.on.includes('nonzero-exit') || (f.exitCode !== undefined && policy.on.includes(f.exitCode))
      );
    case 'runner-lost':
    case 'timeout':
      return policy.on.includes(f.failureKind);
    default:
      return false;
  }
}

/**
 * Seconds to wait before attempt `next` (2 for the first retry): `initial_s`, times `factor`
 * for each retry after the first, at most `max_s`.
 *
 * @example
 * backoffS({ initial_s: 5, factor: 2, max_s: 300 }, 4); // 20
 */
export function backoffS(backoff: RetryPolicy['backoff'], next: number): number {
  return Math.min(backoff.max_s, backoff.initial_s * backoff.factor ** Math.max(0, next - 2));
}

/**
 * The one retry decision: the delay in seconds before the failed attempt's run goes back to
 * the queue as its next attempt, or `undefined` when the failure ends the run (no policy, the
 * policy does not name this failure, no attempts left, or a cancel was asked for).
 *
 * @example
 * const delay = retryDelayS(state, { failureKind: 'timeout' });
 */
export function retryDelayS(s: RetryState, f: FailedAttempt): number | undefined {
  if (s.cancel_requested || s.attempt >= s.max_attempts || !retries(s.retry, f)) return undefined;
  return backoffS(s.retry!.backoff, s.attempt + 1);
}
