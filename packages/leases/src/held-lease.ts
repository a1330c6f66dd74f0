import { performance } from 'node:perf_hooks';
import { LEASE_MS_MAX, LEASE_MS_MIN, backoffDelay, type BackoffOptions } from '@runt/protocol';
import { LeaseError, LeaseLostError, type LeaseRequestError } from './errors.js';
import { type LeaseHttp, runPath } from './lease-http.js';
import { requireLeaseMs, requireText } from './lease-record.js';
import {
  type ClaimAnswer,
  claimAnswerSchema,
  claimResponseSchema,
  type HeartbeatAnswer,
  heartbeatAnswerSchema,
} from './wire-schemas.js';

/** A lease obtained from `LeaseClient.claim`. */
export interface ClaimedLease {
  runId: string;
  runnerId: string;
  fencingToken: number;
  leaseMs: number;
  /** Expiry as the control plane reported it (its clock; informational only). */
  expiresAt: Date;
  /** The control plane's run object from the claim response, untouched. */
  run: unknown;
  /**
   * The whole claim answer, fields `LeaseClient` does not know included (runt's control plane
   * sends `next_event_seq` and `pending_commands`). Set by `claim` and `claimedLeaseFrom`.
   */
  answer?: ClaimAnswer;
  /**
   * `performance.now()` when the successful claim request was sent. The local deadline is
   * `claimedAt + leaseMs`: the server's expiry can only be later, so a slow answer never makes
   * the client believe in a lease the server has already expired.
   */
  claimedAt: number;
}

/** Tuning of the renew loop. */
export interface HoldOptions {
  /**
   * Lower bound of the renew interval (default 1000 ms). Renewals run every
   * `max(leaseMs / 3, minRenewIntervalMs)`, minus up to 10% jitter; `leaseMs` must be at least
   * twice this. Lower it only in tests.
   */
  minRenewIntervalMs?: number;
  /**
   * Called after every successful renewal with the expiry the control plane reported and its
   * whole answer, fields `LeaseClient` does not know included (runt's `cancel_requested`).
   */
  onRenew?: (expiresAt: Date, answer: HeartbeatAnswer) => void;
  /**
   * Called once when the lease is lost, with the same `LeaseLostError` `signal` is aborted with.
   * A holder that only needs this does not read `signal`, and no `AbortController` is made for
   * the lease (an agent holds one lease per run: issue 9, agent profile).
   */
  onLost?: (reason: LeaseLostError) => void;
}

/** `held` while renewing, `lost` once the signal fired, `stopped` after `stop()` / `release()`. */
export type HeldLeaseState = 'held' | 'lost' | 'stopped';

/** A claimed lease kept alive by a renew loop; see `LeaseClient.hold`. */
export interface HeldLease {
  readonly runId: string;
  readonly runnerId: string;
  readonly fencingToken: number;
  readonly leaseMs: number;
  /**
   * Aborted with a `LeaseLostError` when the lease is lost; never aborted by `stop()`. Made when
   * first read (already aborted when read after the loss).
   */
  readonly signal: AbortSignal;
  readonly state: HeldLeaseState;
  /** Successful renewals so far. */
  readonly renewals: number;
  /** Latest expiry the control plane reported (its clock; informational only). */
  readonly expiresAt: Date;
  /** Stops renewing (idempotent). The lease then expires on the server unless released. */
  stop(): void;
  /** Stops renewing and releases the lease; `false` when the control plane said it was no longer ours. */
  release(): Promise<boolean>;
}

/** Where and when a claim made outside `LeaseClient` was taken; see `claimedLeaseFrom`. */
export interface ClaimedLeaseFromOptions {
  runnerId: string;
  /** The `lease_ms` the claim asked for. */
  leaseMs: number;
  /**
   * `performance.now()` when the claim request was sent (not when its answer came): the renew
   * loop's local deadline is `claimedAt + leaseMs`. For a lease confirmed later by a renewal,
   * when that renewal was sent.
   */
  claimedAt: number;
}

/**
 * Builds a `ClaimedLease` from a claim made elsewhere (another HTTP client, or a lease confirmed
 * by a heartbeat after a restart), so that `LeaseClient.hold` can keep it alive. `answer` is the
 * claim answer (`fencing_token`, `expires_at`, optional `run`; other fields are kept in
 * `answer`). Throws `LeaseError` (`lease-invalid-argument`) when the answer or options are not
 * usable.
 *
 * @example
 * const sentAt = performance.now();
 * const claim = await myClient.claimRun(runId, { runner_id: 'ws_a', lease_ms: 30_000 });
 * const held = leases.hold(runId, claimedLeaseFrom(runId, claim, { runnerId: 'ws_a', leaseMs: 30_000, claimedAt: sentAt }));
 */
export function claimedLeaseFrom(
  runId: string,
  answer: unknown,
  opts: ClaimedLeaseFromOptions,
): ClaimedLease {
  requireText('runId', runId);
  requireText('runnerId', opts.runnerId);
  requireLeaseMs('leaseMs', opts.leaseMs, LEASE_MS_MIN, LEASE_MS_MAX);
  if (!Number.isFinite(opts.claimedAt) || opts.claimedAt > now()) {
    throw new LeaseError(
      'lease-invalid-argument',
      'claimedAt must be a performance.now() reading taken when the claim was sent',
    );
  }
  let data = plainClaimAnswer(answer);
  if (!data) {
    const parsed = claimAnswerSchema.safeParse(answer);
    if (!parsed.success) {
      throw new LeaseError('lease-invalid-argument', `not a claim answer: ${parsed.error.message}`, {
        cause: parsed.error,
      });
    }
    data = parsed.data;
  }
  return {
    runId,
    runnerId: opts.runnerId,
    fencingToken: data.fencing_token,
    leaseMs: opts.leaseMs,
    expiresAt: new Date(data.expires_at),
    run: data.run,
    answer: data,
    claimedAt: opts.claimedAt,
  };
}

const expiresAtSchema = claimResponseSchema.shape.expires_at;

/**
 * `answer` as it is (no copy) when `claimAnswerSchema` would take it unchanged: a plain object
 * whose `fencing_token` is a positive safe integer and whose `expires_at` passes the schema's
 * own datetime check; `undefined` otherwise, and the schema decides. An agent builds a lease
 * from every claim answer it holds (one per run), whose run the schema of the message that
 * brought it already checked (issue 9, agent profile: this parse was ~1.3 % of its CPU).
 * Exported for its test only.
 */
export function plainClaimAnswer(answer: unknown): ClaimAnswer | undefined {
  if (typeof answer !== 'object' || answer === null || Object.getPrototypeOf(answer) !== Object.prototype)
    return undefined;
  const a = answer as Record<string, unknown>;
  const token = a.fencing_token;
  if (typeof token !== 'number' || !Number.isSafeInteger(token) || token <= 0) return undefined;
  if (typeof a.expires_at !== 'string' || !expiresAtSchema.safeParse(a.expires_at).success) return undefined;
  return Object.getOwnPropertySymbols(a).length === 0 ? (a as ClaimAnswer) : undefined;
}

export interface HeldLeaseDeps {
  http: LeaseHttp;
  backoff: BackoffOptions;
  random: () => number;
  release: (lease: ClaimedLease) => Promise<boolean>;
}

const now = () => performance.now();

/**
 * One object per held lease, its state in fields and its timers' callbacks shared by every
 * lease (given it as the timer's argument), only `stop` and `release` its own: an agent holds one lease per
 * run, and the closures and accessor pairs of a closure-built holder were ~2.2 KB of the ~70 KB
 * it allocated per run (issue 9, agent heap profile).
 */
export function startHeldLease(deps: HeldLeaseDeps, lease: ClaimedLease, opts: HoldOptions = {}): HeldLease {
  return new LeaseHolder(deps, lease, opts);
}

class LeaseHolder implements HeldLease {
  readonly runId: string;
  readonly runnerId: string;
  readonly fencingToken: number;
  readonly leaseMs: number;
  readonly #deps: HeldLeaseDeps;
  readonly #lease: ClaimedLease;
  readonly #opts: HoldOptions;
  readonly #baseInterval: number;
  /** Made when `signal` is first read (a holder with `onLost` alone never reads it). */
  #lost: AbortController | undefined;
  #lostReason: LeaseLostError | undefined;
  #state: HeldLeaseState = 'held';
  #renewals = 0;
  #expiresAt: Date;
  #deadline: number;
  #renewTimer: NodeJS.Timeout | undefined;
  #deadlineTimer: NodeJS.Timeout | undefined;
  #inflight: AbortController | undefined;
  #lastTransient: LeaseRequestError | undefined;

  // Timers are unref'd: a renew loop alone must not keep a process alive. Their callbacks are
  // shared by every holder (given it as the timer's argument) and private: the renew loop's
  // steps are no part of a held lease's surface.
  static #onDeadlineTimer(holder: LeaseHolder): void {
    holder.#onDeadline();
  }
  static #onRenewTimer(holder: LeaseHolder, attempt: number): void {
    void holder.#renew(attempt);
  }

  constructor(deps: HeldLeaseDeps, lease: ClaimedLease, opts: HoldOptions) {
    const minInterval = opts.minRenewIntervalMs ?? 1000;
    if (!(minInterval > 0))
      throw new LeaseError('lease-invalid-argument', 'minRenewIntervalMs must be positive');
    const baseInterval = Math.max(lease.leaseMs / 3, minInterval);
    if (baseInterval * 2 > lease.leaseMs) {
      throw new LeaseError(
        'lease-invalid-argument',
        `leaseMs (${lease.leaseMs}) must be at least twice the minimum renew interval (${minInterval} ms)`,
      );
    }
    this.runId = lease.runId;
    this.runnerId = lease.runnerId;
    this.fencingToken = lease.fencingToken;
    this.leaseMs = lease.leaseMs;
    this.#deps = deps;
    this.#lease = lease;
    this.#opts = opts;
    this.#baseInterval = baseInterval;
    this.#expiresAt = lease.expiresAt;
    this.#deadline = lease.claimedAt + lease.leaseMs;
    this.#scheduleRenew(lease.claimedAt + this.#nextInterval(), 0);
  }

  get signal(): AbortSignal {
    if (!this.#lost) {
      this.#lost = new AbortController();
      if (this.#lostReason) this.#lost.abort(this.#lostReason);
    }
    return this.#lost.signal;
  }
  get state(): HeldLeaseState {
    return this.#state;
  }
  get renewals(): number {
    return this.#renewals;
  }
  get expiresAt(): Date {
    return this.#expiresAt;
  }

  // Own functions, not prototype methods: callers destructure them (`const { release } = held`)
  // or pass them as callbacks, as they could when a held lease was a plain object of closures.
  readonly stop = (): void => {
    if (this.#state !== 'held') return;
    this.#state = 'stopped';
    this.#clear();
  };

  readonly release = async (): Promise<boolean> => {
    this.stop();
    return this.#deps.release(this.#lease);
  };

  #clear(): void {
    clearTimeout(this.#renewTimer);
    clearTimeout(this.#deadlineTimer);
    this.#inflight?.abort(new LeaseError('lease-lost', 'renew loop stopped'));
    this.#inflight = undefined;
  }

  #lose(reason: LeaseLostError['reason'], message: string, cause?: unknown): void {
    if (this.#state !== 'held') return;
    this.#state = 'lost';
    this.#clear();
    const lost = new LeaseLostError(this.runId, this.fencingToken, reason, message, { cause });
    this.#lostReason = lost;
    this.#lost?.abort(lost);
    this.#opts.onLost?.(lost);
  }

  #armDeadline(): void {
    clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = setTimeout(
      LeaseHolder.#onDeadlineTimer,
      Math.max(0, Math.ceil(this.#deadline - now())),
      this,
    );
    this.#deadlineTimer.unref();
  }

  /** The deadline timer's callback (and a renewal found past the deadline). */
  #onDeadline(): void {
    if (this.#state !== 'held') return;
    if (now() < this.#deadline) return this.#armDeadline();
    this.#lose('expired', `lease on ${this.runId} was not renewed before it expired`, this.#lastTransient);
  }

  #scheduleRenew(atMs: number, attempt: number): void {
    clearTimeout(this.#renewTimer);
    this.#renewTimer = setTimeout(
      LeaseHolder.#onRenewTimer,
      Math.max(0, Math.ceil(atMs - now())),
      this,
      attempt,
    );
    this.#renewTimer.unref();
  }

  #nextInterval(): number {
    return this.#baseInterval * (1 - 0.1 * this.#deps.random());
  }

  /** The renew timer's callback. */
  async #renew(attempt: number): Promise<void> {
    if (this.#state !== 'held') return;
    const sentAt = now();
    if (sentAt >= this.#deadline) return this.#onDeadline();
    // The deadline can only pass once renewals are due: its timer is armed with the first one,
    // not at the start (most of an agent's leases end before then: a timer fewer per run).
    if (this.#deadlineTimer === undefined) this.#armDeadline();
    const ac = new AbortController();
    this.#inflight = ac;
    let result;
    try {
      result = await this.#deps.http.post(
        runPath(this.runId, 'heartbeat'),
        { fencing_token: this.fencingToken, lease_ms: this.leaseMs, runner_id: this.runnerId },
        heartbeatAnswerSchema,
        // An answer after the deadline is worthless: the lease is already judged lost.
        { signal: ac.signal, timeoutMs: this.#deadline - sentAt },
      );
    } catch {
      return; // aborted by stop() or by losing the lease
    } finally {
      if (this.#inflight === ac) this.#inflight = undefined;
    }
    // `stop()` or a loss may have come while the request was out.
    if ((this.#state as HeldLeaseState) !== 'held') return;
    switch (result.kind) {
      case 'ok': {
        this.#renewals += 1;
        this.#lastTransient = undefined;
        this.#deadline = Math.max(this.#deadline, sentAt + this.leaseMs);
        const reported = new Date(result.body.expires_at);
        if (!Number.isNaN(reported.getTime())) this.#expiresAt = reported;
        this.#armDeadline();
        this.#scheduleRenew(sentAt + this.#nextInterval(), 0);
        this.#opts.onRenew?.(this.#expiresAt, result.body);
        return;
      }
      case 'conflict':
        return this.#lose(
          'refused',
          `the control plane refused to renew the lease on ${this.runId}: ${result.message}`,
        );
      case 'fatal':
        return this.#lose(
          'failed',
          `renewing the lease on ${this.runId} failed: ${result.error.message}`,
          result.error,
        );
      case 'transient': {
        const delay = backoffDelay(attempt + 1, {
          ...this.#deps.backoff,
          random: this.#deps.random,
          retryAfterMs: result.retryAfterMs,
        });
        // Past the deadline the deadline timer declares the lease lost; no point in asking again.
        if (now() + delay < this.#deadline) this.#scheduleRenew(now() + delay, attempt + 1);
        this.#lastTransient = result.error;
        return;
      }
    }
  }
}
