import type { ControlMessage } from '@runt/protocol';

/**
 * What routes, the sweeper and the scheduler tell the rest of the process after a commit:
 * wake live event followers, run a scheduling pass, push a message to a workstation's agent.
 * All three only deliver: the database stays the truth, so a lost signal costs latency.
 */
export interface RunSignals {
  eventsAppended(runId: string): void;
  /** `submitted`: only a new run is waiting (the scheduler may skip it when no slot is free). */
  schedule(reason?: 'submitted'): void;
  toWorkstation(workstationId: string, message: ControlMessage): void;
}

/** Signals that go nowhere (tests of a single piece, `createApp` without a server). */
export const quietSignals: RunSignals = {
  eventsAppended() {},
  schedule() {},
  toWorkstation() {},
};
