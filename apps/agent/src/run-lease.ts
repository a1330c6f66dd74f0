import { performance } from 'node:perf_hooks';
import { isApiError, type ControlPlaneClient } from '@runt/protocol';
import { jitter, retryDelay } from './sleep.js';

export interface RunLeaseOptions {
  client: Pick<ControlPlaneClient, 'heartbeatRun'>;
  runId: string;
  fencingToken: number;
  leaseMs: number;
  /** `performance.now()` when the claim (or the last good renewal) was sent. */
  heldSince?: number;
  /** The control plane asked to cancel the run (from a heartbeat answer). */
  onCancelRequested?: () => void;
}

/**
 * Keeps a run's lease alive with `POST /api/runs/:id/heartbeat` every third of the lease
 * (jittered), retrying transient failures with backoff until the local deadline. `signal`
 * aborts when the lease is lost: refused (409) or not renewed before `heldSince + leaseMs` on
 * the local monotonic clock. Unlike `@runt/leases`' `hold`, it passes the heartbeat answer's
 * `cancel_requested` on, which is how cancels reach an agent whose link is down.
 *
 * @example
 * const lease = new RunLease({ client, runId, fencingToken, leaseMs: 30_000, onCancelRequested: cancel });
 * lease.signal.addEventListener('abort', stopWorkload);
 * lease.stop();
 */
export class RunLease {
  readonly #lost = new AbortController();
  #deadline: number;
  #timer: NodeJS.Timeout | undefined;
  #deadlineTimer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(private readonly opts: RunLeaseOptions) {
    const since = opts.heldSince ?? performance.now();
    this.#deadline = since + opts.leaseMs;
    this.#armDeadline();
    this.#schedule(Math.max(0, since + this.#interval() - performance.now()), 0);
  }

  /** Aborted (with the reason) when the lease is lost; never by `stop()`. */
  get signal(): AbortSignal {
    return this.#lost.signal;
  }

  /** Stops renewing (idempotent). */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#deadlineTimer);
  }

  #interval(): number {
    return jitter(Math.max(this.opts.leaseMs / 3, 500), 0.1);
  }

  #lose(message: string): void {
    if (this.#stopped || this.#lost.signal.aborted) return;
    this.stop();
    this.#lost.abort(new Error(message));
  }

  #armDeadline(): void {
    clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = setTimeout(() => {
      if (performance.now() >= this.#deadline) this.#lose(`lease on ${this.opts.runId} was not renewed before it expired`);
      else this.#armDeadline();
    }, Math.max(0, Math.ceil(this.#deadline - performance.now())));
    this.#deadlineTimer.unref();
  }

  #schedule(ms: number, attempt: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#renew(attempt), ms);
    this.#timer.unref();
  }

  async #renew(attempt: number): Promise<void> {
    if (this.#stopped) return;
    const sentAt = performance.now();
    try {
      const res = await this.opts.client.heartbeatRun(this.opts.runId, { fencing_token: this.opts.fencingToken, lease_ms: this.opts.leaseMs });
      if (this.#stopped) return;
      this.#deadline = Math.max(this.#deadline, sentAt + this.opts.leaseMs);
      this.#armDeadline();
      this.#schedule(this.#interval(), 0);
      if (res.cancel_requested) this.opts.onCancelRequested?.();
    } catch (e) {
      if (this.#stopped) return;
      if (isApiError(e) && (e.status === 409 || e.status === 403 || e.status === 404)) {
        return this.#lose(`the control plane refused to renew the lease on ${this.opts.runId}: ${e.message}`);
      }
      const delay = retryDelay(attempt + 1, 200, this.opts.leaseMs / 4);
      if (performance.now() + delay < this.#deadline) this.#schedule(delay, attempt + 1);
    }
  }
}
