import { performance } from 'node:perf_hooks';
import { backoffDelay, sleep, type ClaimRunResponse, type ControlPlaneClient } from '@runt/protocol';
import type { Logger } from 'pino';
import { refusedByControlPlane as refused } from './ask-until-answered.js';

export interface ClaimUntilKnownOptions {
  client: Pick<ControlPlaneClient, 'claimRun'>;
  runId: string;
  runnerId: string;
  leaseMs: number;
  logger: Logger;
  /** Give up on an unanswered claim after this long (default twice the lease). */
  boundMs?: number;
  /** Backoff between tries (tests shorten it). */
  backoff?: { baseMs: number; capMs: number };
  /** Aborted when the agent stops taking runs (drain, shutdown): no further try. */
  signal?: AbortSignal | undefined;
}

/**
 * Claims an offered run and learns the outcome even when the answer is lost. A claim whose
 * answer never arrived (timed out, connection lost, 5xx) may have been applied: the run would
 * then be `accepted` with a lease nobody renews, and when it ran out the run failed
 * `runner-lost` without its workload ever starting (what the chaos suite saw on PGlite, issue 8).
 * A claim by the same runner is idempotent (the control plane returns the same fencing token),
 * so the claim is sent again, with backoff, until the control plane answers either way or
 * `boundMs` has passed or `signal` aborts. Resolves the claim with the send time of the answered request, or
 * `undefined` when it was refused (or never answered within the bound).
 *
 * @example
 * const claim = await claimUntilKnown({ client, runId: 'run_1', runnerId: 'agent-1', leaseMs: 30_000, logger });
 */
export async function claimUntilKnown(
  o: ClaimUntilKnownOptions,
): Promise<{ claim: ClaimRunResponse; sentAt: number } | undefined> {
  const deadline = performance.now() + (o.boundMs ?? 2 * o.leaseMs);
  for (let attempt = 1; ; attempt++) {
    // The lease is measured from when the answered request was sent (the local deadline).
    const sentAt = performance.now();
    try {
      return {
        claim: await o.client.claimRun(o.runId, { runner_id: o.runnerId, lease_ms: o.leaseMs }),
        sentAt,
      };
    } catch (e) {
      if (refused(e)) {
        o.logger.debug({ run_id: o.runId, err: e }, 'claim refused');
        return undefined;
      }
      // Stopping (drain, shutdown): no more tries, and no timer holding the process up.
      if (performance.now() >= deadline || o.signal?.aborted) {
        o.logger.warn({ run_id: o.runId, err: e }, 'claim never answered; giving it up');
        return undefined;
      }
      o.logger.info({ run_id: o.runId, err: (e as Error).message }, 'claim not answered; asking again');
      if (!(await sleep(backoffDelay(attempt, o.backoff ?? { baseMs: 500, capMs: 5_000 }), o.signal))) {
        o.logger.warn({ run_id: o.runId }, 'stopping: an unanswered claim is not asked again');
        return undefined;
      }
    }
  }
}
