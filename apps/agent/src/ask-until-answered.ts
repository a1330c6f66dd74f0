import { performance } from 'node:perf_hooks';
import { backoffDelay, isApiError, sleep } from '@runt/protocol';

/** A refusal the control plane decided (4xx other than 408/429): asking again cannot change it. */
export function refusedByControlPlane(e: unknown): boolean {
  return isApiError(e) && e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429;
}

/** The control plane's answer, its refusal, or neither within the bound (the last failure). */
export type Asked<T> = { answer: T } | { refused: unknown } | { unanswered: unknown };

export interface AskOptions {
  /** Stop asking after this long (ms). */
  boundMs: number;
  /** Backoff between tries (tests shorten it). */
  backoff?: { baseMs: number; capMs: number };
  /** No further try once aborted. */
  signal?: AbortSignal | undefined;
}

/**
 * Calls `call` until the control plane answers it or refuses it: a failure that says nothing
 * about the question (unreachable, timed out, 5xx, 408/429 — a control plane restarting) is
 * asked again with backoff, for at most `boundMs`. A restarted agent must not take "no answer"
 * for "not yours" (issue 8, chaos: a re-adoption heartbeat sent while the control plane was
 * being restarted stopped a healthy workload as "no longer ours").
 *
 * @example
 * const r = await askUntilAnswered(() => client.heartbeatRun(id, body), { boundMs: 30_000 });
 * if ('answer' in r) keep(r.answer);
 */
export async function askUntilAnswered<T>(call: () => Promise<T>, o: AskOptions): Promise<Asked<T>> {
  const deadline = performance.now() + o.boundMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return { answer: await call() };
    } catch (e) {
      if (refusedByControlPlane(e)) return { refused: e };
      if (performance.now() >= deadline || o.signal?.aborted) return { unanswered: e };
      const wait = Math.min(
        backoffDelay(attempt, o.backoff ?? { baseMs: 500, capMs: 5_000 }),
        Math.max(0, deadline - performance.now()),
      );
      if (!(await sleep(wait, o.signal))) return { unanswered: e };
    }
  }
}
