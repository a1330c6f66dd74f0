import type { Logger } from 'pino';
import type { LeaseStore } from '@runt/leases';
import type { Database } from '@runt/sql';
import type { RunSignals } from './run-signals.js';
import { leaseSql } from '@runt/leases';
import { creditOutage, creditOutageAndProbe } from './outage-clock.js';
import { readRunState } from './run-state.js';
import { fromStatuses } from './state-machine.js';
import { traceMark, tracing } from '../trace.js';
import {
  expireQueued,
  LEASE_WITHOUT_RUN,
  lockExpiredRuns,
  loseRunner,
  OVERDUE_WHERE,
  QUEUE_EXPIRED_WHERE,
  STALE_OFFER_WHERE,
  timeOutOverdue,
  withdrawStaleOffers,
  type LostOutcome,
} from './transitions.js';

export interface SweeperOptions {
  db: Database;
  logger: Logger;
  leases: LeaseStore;
  signals: RunSignals;
  intervalMs: number;
  offerTimeoutMs: number;
  /**
   * A gap between two sweeps (any replica) longer than this is an outage: nobody could renew a
   * lease, so the gap is credited to the leases still live at the last sweep (`creditOutage`).
   * Default: 10 s, or 10 sweep intervals if that is longer.
   */
  outageAfterMs?: number;
  /**
   * Seconds past a run's `timeout_s` before the sweeper ends it itself (the agent stops it at
   * `timeout_s`; this is the backstop for one that does not). Default 60.
   */
  timeoutGraceS?: number;
}

const LOSABLE = fromStatuses('loseRunner');

/** What one sweep did. */
export interface SweepResult {
  lost: Array<{ runId: string; outcome: LostOutcome }>;
  offersRequeued: string[];
  /** Milliseconds of outage credited to live leases before judging them (0: none). */
  outageCreditedMs: number;
  /** Never placed within `queue_timeout_s`: now `blocked` (`unplaceable`). */
  unplaceable: string[];
  /** Past `timeout_s` + grace and still active: now `failed` (`timeout`). */
  timedOut: string[];
}

/**
 * Periodically ends attempts whose lease ran out (by the database clock) and takes back
 * offers nobody claimed. An expired lease is cleared and its run handled in ONE transaction,
 * the run locked before its lease (runs and leases another transaction holds are skipped, left
 * to the next sweep), so with several control-plane processes
 * each lost runner is handled once. An expired lease never re-queues (`mayRequeue`): the agent
 * may have started the workload before it went silent, so the attempt fails with `runner-lost`
 * and the run is never started twice; only a runner's own release gives an attempt back.
 *
 * @example
 * const sweeper = new Sweeper({ db, logger, leases, signals, intervalMs: 1000, offerTimeoutMs: 30_000 });
 * sweeper.start(); await sweeper.stop();
 */
export class Sweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;

  constructor(private readonly o: SweeperOptions) {}

  /** Starts the periodic sweep. */
  start(): void {
    this.timer = setInterval(() => {
      if (this.running) return;
      // Traced as the window a sweep's statements share the machine with the offer path (the
      // replicas bench counts the samples it overlapped).
      if (tracing) traceMark('sweep.start', 'sweep');
      this.running = this.sweep()
        .catch((e: unknown) => this.o.logger.warn({ err: (e as Error).message }, 'sweep failed'))
        .finally(() => {
          this.running = undefined;
          if (tracing) traceMark('sweep.end', 'sweep');
        });
    }, this.o.intervalMs);
    this.timer.unref();
  }

  /** Stops the timer and waits for a sweep in progress. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /**
   * Credits an outage (no sweep by any replica for longer than the threshold) to the leases
   * still live at the last sweep; the ms credited (0: none). Every sweep starts with it, and a
   * starting control plane calls it before it listens: a renewal or report that arrives before
   * the first sweep must not be refused for a lease that ran out only because the control plane
   * was down (the agent keeps its workload until the control plane answers, issue 8).
   *
   * @example
   * await sweeper.creditOutage(); // then listen
   */
  async creditOutage(): Promise<number> {
    return this.credited(await creditOutage(this.o.db, this.outageAfterMs()));
  }

  private outageAfterMs(): number {
    return this.o.outageAfterMs ?? Math.max(10_000, 10 * this.o.intervalMs);
  }

  private credited(ms: number): number {
    if (ms > 0)
      this.o.logger.warn(
        { outage_ms: ms },
        'no sweep for a while (outage?): the time was credited to live leases',
      );
    return ms;
  }

  /**
   * One sweep: an outage credited to live leases first (leases outlive a control-plane outage),
   * then expired leases, stale offers, queued runs past their queue timeout and runs past their
   * timeout — each step only when the sweep's first statement found it a row.
   *
   * @example
   * const { lost, offersRequeued } = await sweeper.sweep();
   */
  async sweep(): Promise<SweepResult> {
    const lost: SweepResult['lost'] = [];
    // The clock, and whether each step below has a row to take, in one statement: an idle sweep
    // (nothing expired, the usual case) is this one round trip, where the steps' own statements
    // and transactions took ~11 — every second on every replica, each a wake-up of a Postgres
    // server process beside the offer path (issue 10, docs/benchmarks.md "The cross-replica
    // tail's anatomy"). Each step runs when its condition held in the probe: what the probe
    // misses (a lease running out just after it) the next sweep takes, as a row that ran out
    // just after a step's own statement always was.
    const graceS = this.o.timeoutGraceS ?? 60;
    const probe = await creditOutageAndProbe(
      this.o.db,
      this.outageAfterMs(),
      {
        leases: leaseSql.anyExpired(),
        offers: `exists (select 1 from runs where ${STALE_OFFER_WHERE('$2')})`,
        queued: `exists (select 1 from runs where ${QUEUE_EXPIRED_WHERE})`,
        overdue: `exists (select 1 from runs where ${OVERDUE_WHERE('$3')})`,
      },
      [this.o.offerTimeoutMs, graceS],
    );
    const outageCreditedMs = this.credited(probe.credited);
    const due = probe.due;
    for (; due.leases;) {
      const batch = await this.o.db.transaction(async (tx) => {
        // The runs first (in id order, none another transaction holds), then their leases:
        // the lock order of every multi-row writer (docs/runs.md "Lock order").
        const runIds = await lockExpiredRuns(tx, 100);
        const victims = await this.o.leases.sweepExpired({ tx, limit: 100, resources: runIds });
        // Leases whose run is gone: no run to lock first, nothing to lose; only cleared.
        const orphans = await this.o.leases.sweepExpired({ tx, limit: 100, where: LEASE_WITHOUT_RUN });
        const out: SweepResult['lost'] = [];
        for (const v of victims) {
          const s = await readRunState(tx, v.resource, true);
          // Only the attempt that held this very token; a finished run has nothing to lose.
          if (!s || s.fencing_token !== v.fencingToken || !LOSABLE.includes(s.status)) continue;
          out.push({
            runId: s.id,
            outcome: await loseRunner(tx, s, 'expired', 'the runner stopped renewing its lease'),
          });
        }
        return { more: victims.length === 100 || orphans.length === 100, out };
      });
      lost.push(...batch.out);
      if (!batch.more) break;
    }
    for (const l of lost) {
      this.o.logger.info({ run_id: l.runId, outcome: l.outcome }, 'runner lost');
      this.o.signals.eventsAppended(l.runId);
    }
    const stale = due.offers ? await withdrawStaleOffers(this.o.db, this.o.offerTimeoutMs) : [];
    for (const s of stale)
      this.o.logger.info(
        { run_id: s.id, workstation_id: s.workstation_id },
        'offer not claimed in time; re-queued',
      );
    const unplaceable = due.queued ? await expireQueued(this.o.db) : [];
    for (const id of unplaceable) {
      this.o.logger.info({ run_id: id }, 'not placed within its queue timeout; blocked');
      this.o.signals.eventsAppended(id);
    }
    // The agent is told to stop each one by a cancel published in the same transaction, with
    // the freed slots (a replica that dies right after the commit loses neither for the links
    // and schedulers of the others); `sendCancels` sends the ones for links held here and kicks
    // this replica's scheduler.
    let sendCancels = () => {};
    const timedOut = !due.overdue
      ? []
      : await timeOutOverdue(this.o.db, graceS, 100, async (tx, ended) => {
          sendCancels = await this.o.signals.publish(
            tx,
            ended.flatMap((t) =>
              t.workstation_id
                ? [{ workstationId: t.workstation_id, message: { type: 'cancel' as const, run_id: t.id } }]
                : [],
            ),
            { capacityFreed: true },
          );
        });
    sendCancels();
    for (const t of timedOut) {
      this.o.logger.warn(
        { run_id: t.id, workstation_id: t.workstation_id },
        'run past its timeout not stopped by its agent; failed',
      );
      this.o.signals.eventsAppended(t.id);
    }
    if (lost.length > 0 || stale.length > 0) this.o.signals.schedule();
    return {
      lost,
      offersRequeued: stale.map((s) => s.id),
      outageCreditedMs,
      unplaceable,
      timedOut: timedOut.map((t) => t.id),
    };
  }
}
