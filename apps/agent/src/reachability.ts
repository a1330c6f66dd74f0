import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { isApiError, TransportError } from '@runt/protocol';

/** Answers that mean "the control plane is not there" when a proxy or load balancer gives them. */
const GATEWAY_STATUSES = new Set([502, 503, 504]);

/**
 * Why `error` means the control plane could not be reached (`ECONNREFUSED`, `timed out`,
 * `answered 503`), or `undefined` when it answered (a refusal, a conflict: the caller's business).
 *
 * @example
 * unreachableReason(unreachableError(url, 'ECONNREFUSED')); // 'ECONNREFUSED'
 */
export function unreachableReason(error: unknown): string | undefined {
  if (error instanceof TransportError) return error.reason;
  if (isApiError(error)) {
    if (error.code === 'unreachable') {
      const cause = error.cause;
      if (cause instanceof TransportError) return cause.reason;
      return error.message.replace(/^cannot reach \S+: /, '');
    }
    if (GATEWAY_STATUSES.has(error.status)) return `answered ${error.status}`;
  }
  return undefined;
}

/** What a loop tells about its calls: bound to the agent's {@link Reachability} and current URL. */
export interface ReachReport {
  /** The control plane answered. */
  reached(): void;
  /** `what`, begun at `startedAt` (performance.now()), failed with `error`; `true` when that was an outage (already logged). */
  failed(error: unknown, what: string, startedAt?: number): boolean;
}

/**
 * Whether the control plane answers, for the log: while it is down the agent keeps retrying
 * (link, polling, heartbeats, registration), and a person should read one line when it goes
 * ("control plane unreachable at <url>: <reason>; retrying") and one when it is back
 * ("reconnected after 12s"), not a stack trace per retry. Every failure is still logged at
 * debug with its error. Fed by every loop; the first to notice a change logs it.
 *
 * @example
 * const reach = new Reachability(logger);
 * try { await client.offeredRuns(id); reach.reached(); }
 * catch (e) { if (!reach.failed(url, e, 'polling for offers')) logger.warn({ err: e }, 'polling for offers failed'); }
 */
export class Reachability {
  #downSince: number | undefined;
  #everReached = false;
  #lastReached = -Infinity;

  constructor(
    private readonly logger: Logger,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** True between an "unreachable" line and the next answer. */
  get down(): boolean {
    return this.#downSince !== undefined;
  }

  /** The control plane answered (any answer but a gateway's 502/503/504). */
  reached(): void {
    const since = this.#downSince;
    const first = !this.#everReached;
    this.#everReached = true;
    this.#lastReached = this.now();
    if (since === undefined) return;
    this.#downSince = undefined;
    const downMs = Math.round(this.now() - since);
    this.logger.info(
      { down_ms: downMs },
      `${first ? 'connected' : 'reconnected'} after ${formatDuration(downMs)}`,
    );
  }

  /**
   * `what` failed with `error`. When the error says the control plane could not be reached,
   * logs the state change (once) and returns `true`: the caller logs nothing more. Otherwise
   * returns `false` and the caller logs the error as it sees fit.
   */
  failed(url: string, error: unknown, what: string, startedAt?: number): boolean {
    const reason = unreachableReason(error);
    if (reason === undefined) return false;
    this.unreachable(url, reason, what, { error, startedAt });
    return true;
  }

  /**
   * `what` could not reach `url` for `reason` (the link's attempts, which have no ApiError). A
   * call begun before the last answer (a slow retry that failed while another call got through)
   * says nothing about now: debug only.
   */
  unreachable(
    url: string,
    reason: string,
    what: string,
    opts: { error?: unknown; startedAt?: number | undefined } = {},
  ): void {
    this.logger.debug(
      { url, reason, ...(opts.error ? { err: opts.error } : {}) },
      `${what}: control plane unreachable`,
    );
    if (this.#downSince !== undefined) return;
    if (opts.startedAt !== undefined && opts.startedAt < this.#lastReached) return;
    this.#downSince = this.now();
    this.logger.warn(`control plane unreachable at ${url}: ${reason}; retrying`);
  }
}

/** `850ms`, `12s`, `3m05s`, `2h10m`. */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.max(0, Math.round(ms))}ms`;
  const s = Math.round(ms / 1_000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
