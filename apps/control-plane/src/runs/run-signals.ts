import type { ControlMessage } from '@runt/protocol';
import type { Queryable, Statement } from '@runt/sql';
import type { EventWaiters } from '../event-waiters.js';
import type { LinkMessage } from '../link/link-relay.js';

/**
 * What the lifecycle, the sweeper and the scheduler tell the rest of the process after a
 * commit: wake live event followers, run a scheduling pass, push a message to a workstation's
 * agent. All three only deliver: the database stays the truth, so a lost signal costs latency.
 */
export interface RunSignals {
  eventsAppended(runId: string): void;
  /** `submitted`: only a new run is waiting (the scheduler may skip it when no slot is free). */
  schedule(reason?: 'submitted'): void;
  /** Sends over the link if this process holds it, else publishes it for the replica that does. */
  toWorkstation(workstationId: string, message: ControlMessage): void;
  /**
   * Sends a run claimed on offer (`offer-claimed`) over the link this process holds; false when
   * no open link here took it — nothing is published then (a claim on offer is made only for a
   * link held here, and a re-registration anywhere re-sends it): the agent never got it, and the
   * scheduler hands it back (`transitions.handBackUnsent`).
   */
  sendClaimed(workstationId: string, message: ControlMessage): boolean;
  /**
   * Inside a writer's transaction: publishes the messages for links held by other replicas (sent
   * on commit) and returns the ones for links held here, to pass to `toWorkstation` after the commit.
   * With `capacityFreed`, also tells the other replicas on that commit that a slot may be free
   * (the scheduling pass that carries a finish's notice, see {@link SchedulingTarget.kick}).
   */
  relay(tx: Queryable, items: LinkMessage[], capacityFreed?: boolean): Promise<LinkMessage[]>;
  /**
   * Inside a writer's transaction: publishes with `pg_notify` what other replicas must hear of
   * this write — the messages for links they hold and, with `capacityFreed`, that a slot may be
   * free — so the notifications are committed exactly when the write is. Returns what to do after
   * the commit: send the messages for links held here, and run a scheduling pass when capacity
   * was freed.
   */
  publish(tx: Queryable, items: LinkMessage[], opts?: { capacityFreed?: boolean }): Promise<() => void>;
  /**
   * Runs a write that frees capacity (a finish batch) at the head of the next scheduling pass's
   * first transaction, so the pass places onto the slots it freed in the same commit
   * (`Scheduler.withNextPass`); undefined when no scheduler will run it (the caller writes
   * alone and asks for a pass). Rejects when that transaction failed.
   */
  withPass?(statement: Statement): Promise<unknown[]> | undefined;
}

/** What carries agent messages: this process's links, plus `pg_notify` to the other replicas. */
export interface MessageRelay {
  send(workstationId: string, message: ControlMessage): void;
  /** Sends over a link held here only; false when none (open) took it. Absent: `send`, taken as sent. */
  sendHere?(workstationId: string, message: ControlMessage): boolean;
  relay(tx: Queryable, items: LinkMessage[], capacityFreed?: boolean): Promise<LinkMessage[]>;
  /** Tells the other replicas' schedulers that a slot may be free (they skip submits while full). */
  capacityFreed(): void;
}

/** What `schedule` wakes: the scheduler, which itself sends signals, so it is attached after both exist. */
export interface SchedulingTarget {
  /**
   * Asks for a pass. `freed`: capacity was freed here, and the pass tells the other replicas
   * (with its COMMIT, when it leaves a slot free); returns false when no pass will run (stopped),
   * so the caller tells them itself.
   */
  kick(reason?: 'submitted' | 'freed'): boolean | void;
  /** See {@link RunSignals.withPass}. */
  withNextPass?(statement: Statement): Promise<unknown[]> | undefined;
}

/**
 * The signals of one control-plane process: event followers through `waiters`, agents through
 * the relay (their link here, or `pg_notify` to the replica holding it), scheduling through the
 * scheduler attached with `attachScheduler`; a `schedule` other than `submitted` also tells the
 * other replicas (through the pass it starts: see `Scheduler.kick`). A `schedule` before `attachScheduler` is dropped (the scheduler's start runs
 * a pass anyway).
 *
 * @example
 * const signals = createRunSignals({ waiters, relay });
 * const scheduler = new Scheduler({ db, logger, signals, replicaId, tickMs: 1000 });
 * signals.attachScheduler(scheduler);
 */
export function createRunSignals(o: {
  waiters: EventWaiters;
  relay: MessageRelay;
}): RunSignals & { attachScheduler(target: SchedulingTarget): void } {
  let scheduler: SchedulingTarget | undefined;
  return {
    eventsAppended: (runId) => o.waiters.notify(runId),
    schedule: (reason) => {
      if (reason === 'submitted') {
        scheduler?.kick(reason);
        return;
      }
      // The pass this asks for carries the notice to the other replicas (no statement of its own
      // per finish batch); without a pass to carry it, it goes alone.
      if (scheduler?.kick('freed') !== true) o.relay.capacityFreed();
    },
    toWorkstation: (workstationId, message) => o.relay.send(workstationId, message),
    sendClaimed: (workstationId, message) => {
      if (o.relay.sendHere) return o.relay.sendHere(workstationId, message);
      o.relay.send(workstationId, message);
      return true;
    },
    relay: (tx, items, capacityFreed) => o.relay.relay(tx, items, capacityFreed),
    async publish(tx, items, opts) {
      const local = await o.relay.relay(tx, items, opts?.capacityFreed);
      return () => {
        for (const m of local) o.relay.send(m.workstationId, m.message);
        if (opts?.capacityFreed) scheduler?.kick();
      };
    },
    withPass: (statement) => scheduler?.withNextPass?.(statement),
    attachScheduler(target) {
      scheduler = target;
    },
  };
}
