import type { Logger } from 'pino';
import { backoffDelay, isApiError, jitter, sleep, type Run } from '@runt/protocol';
import { AgentError } from './agent-error.js';

export interface HeartbeatLoopOptions {
  /** Ends the loop. */
  signal: AbortSignal;
  intervalMs: number;
  /** Sends a heartbeat over the link; `false` when the link is down. */
  sendOverLink: () => boolean;
  /** Registers over HTTP instead (rejects on failure). */
  registerHttp: () => Promise<unknown>;
  /** The credential was refused: the loop has ended. */
  onFatal: (error: AgentError) => void;
  logger: Logger;
}

/**
 * The workstation heartbeat: every `intervalMs` (±10%) over the link when it is up, else a
 * registration over HTTP; failures back off from 1 s up to 30 s. An `unauthorized` failure ends
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
    if (opts.sendOverLink()) {
      failures = 0;
      continue;
    }
    try {
      await opts.registerHttp();
      failures = 0;
    } catch (e) {
      if ((e as AgentError).code === 'unauthorized') return opts.onFatal(e as AgentError);
      failures++;
      opts.logger.warn({ err: e }, 'heartbeat failed');
    }
  }
}

export interface PollLoopOptions {
  /** Ends the loop (the agent stopped taking offers). */
  signal: AbortSignal;
  /** Period while the link is down. */
  pollIntervalMs: number;
  /** Period of the safety poll while the link is up (default 30 s). */
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
  logger: Logger;
}

/**
 * The polling path: while the link is down and a slot is free, asks for offered runs every
 * `pollIntervalMs` (±10%; failures back off up to 60 s) and offers them to the slots. With the
 * link up it still polls every `linkUpIntervalMs`, catching an offer whose message was lost.
 *
 * @example
 * void pollLoop({ signal: taking, pollIntervalMs: 2_000, linkUp, hasCapacity, offered, offer, onFatal, setWake, logger });
 */
export async function pollLoop(opts: PollLoopOptions): Promise<void> {
  let failures = 0;
  const { signal } = opts;
  while (!signal.aborted) {
    const linkUp = opts.linkUp();
    if (!linkUp && opts.hasCapacity()) {
      try {
        const { runs } = await opts.offered();
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
        opts.logger.warn({ err: e }, 'polling for offers failed');
      }
    }
    const delay =
      failures > 0
        ? backoffDelay(failures, { baseMs: opts.pollIntervalMs, capMs: 60_000 })
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
