import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { backoffDelay, isApiError, jitter, sleep, type Run } from '@runt/protocol';
import { AgentError } from './agent-error.js';
import type { ReachReport } from './reachability.js';

/** The agent's HTTP fallback starts within this window after its link dropped (see {@link LinkDownGrace}). */
export const LINK_DOWN_SPREAD_MS = 15_000;

/**
 * When the agent may fall back to HTTP while its link is down. Not at once: a control plane that
 * restarts drops every link in the same second, and 20,000 agents polling over HTTP at once would
 * be the herd the link's jittered reconnect avoids. So the fallback starts at a random moment
 * `minMs + random · spreadMs` after the link went down (or, at start, before it first opened);
 * a link back within that window costs no HTTP request at all. Calls for runs already in flight
 * (renewals, reports) are not held back: they go over HTTP at once (`linkVia`).
 *
 * A control plane that sheds the link's upgrade with a `Retry-After` is up and has given this
 * agent its place (`link-pacer.ts`): HTTP waits then until the answer to the re-dial it was told
 * to make is due ({@link hold}), however long the grace above, and opens (at the grace's moment,
 * if that is later) only once that re-dial ended without a link or a new `Retry-After`
 * ({@link release}: the control plane went away) — a fleet shed after a restart sends no HTTP
 * poll to the control plane that is busy re-linking it (issue 9; docs/agent.md, _Link_).
 *
 * @example
 * const grace = new LinkDownGrace({ minMs: 2_000, spreadMs: 15_000 });
 * link.onUp = (up) => (up ? grace.up() : grace.down());
 * link.onHold = (ms) => (ms === undefined ? grace.release() : grace.hold(ms));
 * if (grace.waitMs() === 0) await pollOverHttp();
 */
export class LinkDownGrace {
  #until: number | undefined;
  /** While the link was shed with a `Retry-After`: when the answer to its re-dial is due. */
  #heldUntil: number | undefined;
  constructor(
    private readonly o: {
      minMs: number;
      spreadMs: number;
      random?: () => number;
      now?: () => number;
    },
  ) {
    this.down();
  }

  /** The link dropped (or is not open yet): the fallback opens after a fresh jittered wait. */
  down(): void {
    const now = this.o.now ?? Date.now;
    this.#until ??= now() + this.o.minMs + Math.round((this.o.random ?? Math.random)() * this.o.spreadMs);
  }

  /** The link is open. */
  up(): void {
    this.#until = undefined;
    this.#heldUntil = undefined;
  }

  /**
   * The link's upgrade was shed with a `Retry-After`: no HTTP for `ms` from now (the re-dial's
   * wait, its jitter and its handshake timeout), unless {@link release}d sooner.
   */
  hold(ms: number): void {
    this.#heldUntil = (this.o.now ?? Date.now)() + ms;
  }

  /** A dial ended without a link and without a `Retry-After`: the hold is over; `true` when there was one. */
  release(): boolean {
    const held = this.#heldUntil !== undefined;
    this.#heldUntil = undefined;
    return held;
  }

  /** Milliseconds until HTTP may stand in for the link; 0 when it may now (or the link is up). */
  waitMs(): number {
    if (this.#until === undefined) return 0;
    const until = Math.max(this.#until, this.#heldUntil ?? 0);
    return Math.max(0, until - (this.o.now ?? Date.now)());
  }
}

export interface HeartbeatLoopOptions {
  /** Ends the loop. */
  signal: AbortSignal;
  intervalMs: number;
  /** Sends a heartbeat over the link; `false` when the link is down. */
  sendOverLink: () => boolean;
  /** Registers over HTTP instead (rejects on failure). */
  registerHttp: () => Promise<unknown>;
  /** While above 0 the link is expected back: skip the HTTP registration (see {@link LinkDownGrace}). */
  httpWaitMs?: () => number;
  /** The credential was refused: the loop has ended. */
  onFatal: (error: AgentError) => void;
  /** Told of each HTTP registration's outcome: an outage is logged once there, not per retry. */
  reach?: ReachReport;
  logger: Logger;
}

/**
 * The workstation heartbeat: every `intervalMs` (±10%) over the link when it is up, else a
 * registration over HTTP (once `httpWaitMs` says the link's grace is over); failures back off from
 * 1 s up to 30 s. An `unauthorized` failure ends
 * the loop through `onFatal`.
 *
 * @example
 * void heartbeatLoop({ signal, intervalMs: 15_000, sendOverLink, registerHttp, onFatal, logger });
 */
export async function heartbeatLoop(opts: HeartbeatLoopOptions): Promise<void> {
  let failures = 0;
  while (
    await sleep(
      failures > 0 ? backoffDelay(failures, { baseMs: 1_000, capMs: 30_000 }) : jitter(opts.intervalMs),
      opts.signal,
    )
  ) {
    if (opts.sendOverLink() || (opts.httpWaitMs?.() ?? 0) > 0) {
      failures = 0;
      continue;
    }
    const started = performance.now();
    try {
      await opts.registerHttp();
      opts.reach?.reached();
      failures = 0;
    } catch (e) {
      if ((e as AgentError).code === 'unauthorized') return opts.onFatal(e as AgentError);
      failures++;
      if (!opts.reach?.failed(e, 'heartbeat', started)) opts.logger.warn({ err: e }, 'heartbeat failed');
    }
  }
}

export interface PollLoopOptions {
  /** Ends the loop (the agent stopped taking offers). */
  signal: AbortSignal;
  /** Period while the link is down. */
  pollIntervalMs: number;
  /**
   * While above 0 the link is expected back: no HTTP poll until then (see {@link LinkDownGrace});
   * absent for an agent without a link, which polls at once.
   */
  httpWaitMs?: () => number;
  /** How long the loop sleeps between looks at the link while it is up, polling nothing (default 30 s). */
  linkUpIntervalMs?: number;
  linkUp: () => boolean;
  hasCapacity: () => boolean;
  /** The runs offered to this workstation (`GET /api/workstations/:id/runs?status=offered`). */
  offered: () => Promise<{ runs: Run[] }>;
  offer: (run: Run) => Promise<boolean>;
  /** The credential was refused: the loop has ended. */
  onFatal: (error: AgentError) => void;
  /** Hands out the function that cuts the current wait short (a slot freed, the link dropped). */
  setWake: (wake: (() => void) | undefined) => void;
  /** Told of each poll's outcome: an outage is logged once there, not per retry. */
  reach?: ReachReport;
  logger: Logger;
}

/**
 * The polling path: while the link is down and a slot is free, asks for offered runs every
 * `pollIntervalMs` (±10%; failures back off up to 60 s) and offers them to the slots — after
 * `httpWaitMs`, the link's jittered grace, has run out. With the link up it never polls: it
 * sleeps `linkUpIntervalMs` (or until woken: the link dropped, a slot freed while it is down)
 * and looks at the link again. So an offer message lost on a link that stays up is not caught
 * here: a plain offer nobody claims goes back to the queue after `RUNT_OFFER_TIMEOUT_MS`; with
 * claim on offer the run is leased when offered, re-sent (`claimedOffers`) only when the link
 * re-registers, and a lease that runs out fails it `runner-lost` (never re-queued: at-most-once
 * start, docs/runs.md).
 *
 * @example
 * void pollLoop({ signal: taking, pollIntervalMs: 2_000, linkUp, hasCapacity, offered, offer, onFatal, setWake, logger });
 */
export async function pollLoop(opts: PollLoopOptions): Promise<void> {
  let failures = 0;
  const { signal } = opts;
  while (!signal.aborted) {
    const linkUp = opts.linkUp();
    const grace = linkUp ? 0 : (opts.httpWaitMs?.() ?? 0);
    if (!linkUp && grace === 0 && opts.hasCapacity()) {
      const started = performance.now();
      try {
        const { runs } = await opts.offered();
        opts.reach?.reached();
        failures = 0;
        for (const run of runs) {
          if (!opts.hasCapacity()) break;
          void opts.offer(run);
        }
      } catch (e) {
        if (isApiError(e) && (e.status === 401 || e.status === 403)) {
          return opts.onFatal(
            new AgentError(
              'unauthorized',
              `the control plane refused this workstation's credential: ${e.message}`,
            ),
          );
        }
        failures++;
        if (!opts.reach?.failed(e, 'polling for offers', started))
          opts.logger.warn({ err: e }, 'polling for offers failed');
      }
    }
    const delay =
      failures > 0
        ? backoffDelay(failures, { baseMs: opts.pollIntervalMs, capMs: 60_000 })
        : grace > 0
          ? grace
          : jitter(linkUp ? (opts.linkUpIntervalMs ?? 30_000) : opts.pollIntervalMs);
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        opts.setWake(undefined);
        resolve();
      };
      const timer = setTimeout(done, delay);
      signal.addEventListener('abort', done, { once: true });
      opts.setWake(done);
    });
  }
}
