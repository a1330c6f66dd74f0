import { performance } from 'node:perf_hooks';
import { LeaseConflictError, LeaseLostError } from './errors.js';
import {
  type ClaimedLease,
  type HeldLease,
  type HeldLeaseDeps,
  type HoldOptions,
  startHeldLease,
} from './held-lease.js';
import {
  LEASE_MS_MAX,
  LEASE_MS_MIN,
  type BackoffOptions,
  type RetryOptions,
  type TransportVia,
} from '@runt/protocol';
import { type LeaseCallResult, LeaseHttp, runPath } from './lease-http.js';
import { requireLeaseMs, requireText, requireToken } from './lease-record.js';
import { claimAnswerSchema, heartbeatResponseSchema } from './wire-schemas.js';

/** How `LeaseClient` reaches the control plane. */
export interface LeaseClientOptions {
  /** Control plane origin, e.g. `https://runt.example.com` (paths are `/api/runs/:id/...`). */
  baseUrl: string | URL;
  /** Bearer token (a workstation token); or give `getToken` to read a fresh one per request. */
  token?: string;
  getToken?: () => string | Promise<string>;
  /** Custom `fetch` (default: the global one). */
  fetch?: typeof globalThis.fetch;
  /** Per-request timeout (default 10 s). Renewals are also cut off at the lease's local deadline. */
  timeoutMs?: number;
  /** `node:http` keep-alive instead of `fetch` (ignored with a custom `fetch`); for long-running callers. */
  keepAlive?: boolean;
  /**
   * Another way to the same endpoints, tried before HTTP on every attempt (runt's agent passes its
   * link, so renewals go over it while it is open); see `HttpTransportOptions.via` in `@runt/protocol`.
   */
  via?: TransportVia;
  /** Retries of `claim`, `release` and one-shot `renew` on 408/429/5xx and network errors. */
  retry?: Pick<BackoffOptions, 'random'> & {
    /** First delay before jitter (default 200 ms); doubles on every further attempt. */
    baseMs?: number;
    /** No computed delay exceeds this (default 10 s). A longer `Retry-After` is still honoured. */
    capMs?: number;
    /** Total tries of a one-shot call (default 3). The renew loop retries until its deadline instead. */
    attempts?: number;
    /** A one-shot call waits out a `Retry-After` up to this long (default 30 s); longer, it rejects with `retryAfterMs` set. */
    maxRetryAfterMs?: number;
  };
}

/** Arguments of `LeaseClient.claim`. */
export interface ClaimOptions {
  runnerId: string;
  leaseMs: number;
  signal?: AbortSignal;
}

/** Arguments of a one-shot `LeaseClient.renew` / `release`. */
export interface RenewOptions {
  runnerId: string;
  fencingToken: number;
  leaseMs: number;
  signal?: AbortSignal;
}

export interface ReleaseOptions {
  runnerId: string;
  fencingToken: number;
  signal?: AbortSignal;
}

/**
 * Client of the control plane's lease endpoints (`POST /api/runs/:id/claim`, `/heartbeat`,
 * `/release`) with bearer auth. `claim` takes a run's lease, `hold` keeps it alive with a renew
 * loop and an `AbortSignal` that fires when it is lost, `withLease` does both around a function
 * and releases at the end. Transient failures (408, 429, 5xx, network) are retried with
 * exponential backoff and jitter, honouring `Retry-After`.
 *
 * @example
 * const leases = new LeaseClient({ baseUrl: 'http://127.0.0.1:8787', token: process.env.RUNT_CLOUD_TOKEN });
 * const out = await leases.withLease('run_1', { runnerId: 'ws_a', leaseMs: 30_000 }, async (lease) => {
 *   return doWork({ signal: lease.signal, fencingToken: lease.fencingToken });
 * });
 */
export class LeaseClient {
  readonly #http: LeaseHttp;
  readonly #backoff: BackoffOptions;
  /** The transport's retries of one-shot calls. */
  readonly #retry: RetryOptions;
  readonly #random: () => number;
  #holdDepsOnce: HeldLeaseDeps | undefined;

  constructor(opts: LeaseClientOptions) {
    this.#http = new LeaseHttp(opts);
    const { attempts, maxRetryAfterMs, ...backoff } = opts.retry ?? {};
    this.#random = backoff.random ?? Math.random;
    this.#backoff = { baseMs: backoff.baseMs ?? 200, capMs: backoff.capMs ?? 10_000, random: this.#random };
    this.#retry = {
      ...this.#backoff,
      retries: Math.max(1, attempts ?? 3) - 1,
      maxRetryAfterMs: maxRetryAfterMs ?? 30_000,
    };
  }

  /**
   * Takes the lease of `runId` for `runnerId`. Resolves with the fencing token to send with every
   * fenced report; rejects with `LeaseConflictError` (409) when another runner holds it, and with
   * `LeaseRequestError` for anything else. Safe to retry: a re-claim by the holder returns the
   * same token.
   *
   * @example
   * const lease = await leases.claim('run_1', { runnerId: 'ws_a', leaseMs: 30_000 });
   */
  async claim(runId: string, opts: ClaimOptions): Promise<ClaimedLease> {
    requireText('runId', runId);
    requireText('runnerId', opts.runnerId);
    requireLeaseMs('leaseMs', opts.leaseMs, LEASE_MS_MIN, LEASE_MS_MAX);
    // The deadline counts from the last attempt's send, which the transport's retries do not
    // report: counting from the first is the safe side (the local deadline can only be early).
    const claimedAt = performance.now();
    const result = this.#settled(
      await this.#http.post(
        runPath(runId, 'claim'),
        { runner_id: opts.runnerId, lease_ms: opts.leaseMs },
        claimAnswerSchema,
        this.#opts(opts.signal),
      ),
    );
    if (result.kind === 'conflict') {
      throw new LeaseConflictError(runId, 'remote', `cannot claim ${runId}: ${result.message}`);
    }
    return {
      runId,
      runnerId: opts.runnerId,
      fencingToken: result.body.fencing_token,
      leaseMs: opts.leaseMs,
      expiresAt: new Date(result.body.expires_at),
      run: result.body.run,
      answer: result.body,
      claimedAt,
    };
  }

  /**
   * Renews a lease once (the renew loop of `hold` does this for you). Resolves with the new
   * expiry the control plane reported; rejects with `LeaseLostError` (`refused`) on 409.
   *
   * @example
   * const { expiresAt } = await leases.renew('run_1', { runnerId: 'ws_a', fencingToken: 7, leaseMs: 30_000 });
   */
  async renew(runId: string, opts: RenewOptions): Promise<{ expiresAt: Date }> {
    requireText('runId', runId);
    requireToken(opts.fencingToken);
    requireLeaseMs('leaseMs', opts.leaseMs, LEASE_MS_MIN, LEASE_MS_MAX);
    const result = this.#settled(
      await this.#http.post(
        runPath(runId, 'heartbeat'),
        { fencing_token: opts.fencingToken, lease_ms: opts.leaseMs, runner_id: opts.runnerId },
        heartbeatResponseSchema,
        this.#opts(opts.signal),
      ),
    );
    if (result.kind === 'conflict') {
      throw new LeaseLostError(
        runId,
        opts.fencingToken,
        'refused',
        `the control plane refused to renew ${runId}: ${result.message}`,
      );
    }
    return { expiresAt: new Date(result.body.expires_at) };
  }

  /**
   * Releases a lease so the run can be claimed again at once. Resolves `true` when released and
   * `false` when the control plane answered 409 (the token no longer holds it: already released,
   * expired and swept, or taken over), which callers can usually ignore.
   *
   * @example
   * await leases.release('run_1', { runnerId: 'ws_a', fencingToken: lease.fencingToken });
   */
  async release(runId: string, opts: ReleaseOptions): Promise<boolean> {
    requireText('runId', runId);
    requireToken(opts.fencingToken);
    const result = this.#settled(
      await this.#http.post(
        runPath(runId, 'release'),
        { fencing_token: opts.fencingToken, runner_id: opts.runnerId },
        undefined,
        this.#opts(opts.signal),
      ),
    );
    return result.kind === 'ok';
  }

  /**
   * Keeps a claimed lease alive: renews every `max(leaseMs / 3, 1 s)` (minus up to 10% jitter)
   * on timers, retries transient failures until the local deadline, and aborts `signal` with a
   * `LeaseLostError` when a renewal is refused or none succeeded before `claimedAt + leaseMs`
   * (local monotonic clock, measured from when each successful request was sent). The loop runs
   * on the event loop: work that blocks the loop for longer than the lease starves it.
   *
   * @example
   * const held = leases.hold('run_1', await leases.claim('run_1', { runnerId: 'ws_a', leaseMs: 30_000 }));
   * held.signal.addEventListener('abort', () => stopWorkload());
   */
  hold(runId: string, lease: ClaimedLease, opts: HoldOptions = {}): HeldLease {
    if (lease.runId !== runId) throw new TypeError(`lease is for ${lease.runId}, not ${runId}`);
    return startHeldLease(this.#holdDeps, lease, opts);
  }

  /** What every held lease of this client shares: made once, not per lease (one per agent run). */
  get #holdDeps(): HeldLeaseDeps {
    return (this.#holdDepsOnce ??= {
      http: this.#http,
      backoff: this.#backoff,
      random: this.#random,
      release: (l) => this.release(l.runId, { runnerId: l.runnerId, fencingToken: l.fencingToken }),
    });
  }

  /**
   * Claims the lease of `runId`, holds it while `fn` runs, then stops renewing and releases it
   * (best-effort: a failed release only means the lease expires by itself). `fn` gets the
   * `HeldLease`; it should pass `lease.signal` to its work and send `lease.fencingToken` with every
   * fenced report. `withLease` resolves or rejects exactly as `fn` does.
   *
   * @example
   * await leases.withLease('run_1', { runnerId: 'ws_a', leaseMs: 30_000 }, async (lease) => {
   *   await runWorkload({ signal: lease.signal });
   * });
   */
  async withLease<T>(
    runId: string,
    opts: ClaimOptions & HoldOptions,
    fn: (lease: HeldLease) => Promise<T>,
  ): Promise<T> {
    const claimed = await this.claim(runId, opts);
    let held: HeldLease;
    try {
      held = this.hold(runId, claimed, opts);
    } catch (e) {
      await this.release(runId, { runnerId: claimed.runnerId, fencingToken: claimed.fencingToken }).catch(
        () => false,
      );
      throw e;
    }
    try {
      return await fn(held);
    } finally {
      await held.release().catch(() => false);
    }
  }

  #opts(signal: AbortSignal | undefined) {
    return { retry: this.#retry, ...(signal ? { signal } : {}) };
  }

  /** A result after the transport's retries: ok or conflict, else its error is thrown. */
  #settled<T>(result: LeaseCallResult<T>): Extract<LeaseCallResult<T>, { kind: 'ok' | 'conflict' }> {
    if (result.kind === 'ok' || result.kind === 'conflict') return result;
    throw result.error;
  }
}
