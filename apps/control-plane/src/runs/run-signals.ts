import type { ControlMessage } from '@runt/protocol';
import type { EventWaiters } from '../event-waiters.js';
import type { LinkRegistry } from '../link/link-registry.js';

/**
 * What the lifecycle, the sweeper and the scheduler tell the rest of the process after a
 * commit: wake live event followers, run a scheduling pass, push a message to a workstation's
 * agent. All three only deliver: the database stays the truth, so a lost signal costs latency.
 */
export interface RunSignals {
  eventsAppended(runId: string): void;
  /** `submitted`: only a new run is waiting (the scheduler may skip it when no slot is free). */
  schedule(reason?: 'submitted'): void;
  toWorkstation(workstationId: string, message: ControlMessage): void;
}

/** What `schedule` wakes: the scheduler, which itself sends signals, so it is attached after both exist. */
export interface SchedulingTarget {
  kick(reason?: 'submitted'): void;
}

/**
 * The signals of one control-plane process: event followers through `waiters`, agents through
 * their links, scheduling through the scheduler attached with `attachScheduler`. A `schedule`
 * before that is dropped (the scheduler's start runs a pass anyway).
 *
 * @example
 * const signals = createRunSignals({ waiters, links });
 * const scheduler = new Scheduler({ db, logger, signals, replicaId, tickMs: 1000 });
 * signals.attachScheduler(scheduler);
 */
export function createRunSignals(o: { waiters: EventWaiters; links: LinkRegistry }): RunSignals & { attachScheduler(target: SchedulingTarget): void } {
  let scheduler: SchedulingTarget | undefined;
  return {
    eventsAppended: (runId) => o.waiters.notify(runId),
    schedule: (reason) => scheduler?.kick(reason),
    toWorkstation: (workstationId, message) => void o.links.send(workstationId, message),
    attachScheduler(target) {
      scheduler = target;
    },
  };
}
