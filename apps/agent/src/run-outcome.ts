import type { FailureKind, ReportRunStatusRequest } from '@runt/protocol';
import type { ExitStatus } from '@runt/runtime-spi';

/** How a run ended here, as its status report says it. */
export type Outcome = Pick<
  ReportRunStatusRequest,
  'status' | 'exit_code' | 'failure_kind' | 'failure_message' | 'started_ms_ago'
>;

/** A `failed` outcome of `kind`; the message is cut to the API's 4,000 characters. */
export function failed(kind: FailureKind, message: string): Outcome {
  return { status: 'failed', failure_kind: kind, failure_message: message.slice(0, 4000) };
}

/** A `cancelled` outcome, with the exit code when the workload had one. */
export function cancelled(message: string, exit?: ExitStatus): Outcome {
  return {
    status: 'cancelled',
    failure_kind: 'cancelled',
    failure_message: message,
    ...(exit ? { exit_code: exit.exitCode } : {}),
  };
}

/** A `failed` outcome with `timeout`: the run's `timeout_s` stopped it; the exit code when it had one. */
export function timedOut(message: string, exit?: ExitStatus): Outcome {
  return { ...failed('timeout', message), ...(exit ? { exit_code: exit.exitCode } : {}) };
}

/**
 * The outcome of a workload that ended by itself: `completed` on exit code 0, else `failed`
 * with `nonzero-exit` (naming the signal when it was killed by one); `internal` when the runtime
 * lost track of it (`exit` undefined).
 *
 * @example
 * exitOutcome({ exitCode: 0 }); // { status: 'completed', exit_code: 0 }
 */
export function exitOutcome(exit: ExitStatus | undefined): Outcome {
  if (!exit) return failed('internal', 'the runtime lost track of the workload');
  if (exit.exitCode === 0) return { status: 'completed', exit_code: 0 };
  return {
    status: 'failed',
    exit_code: exit.exitCode,
    failure_kind: 'nonzero-exit',
    failure_message: exit.signal
      ? `ended by ${exit.signal} (exit code ${exit.exitCode})`
      : `exited with code ${exit.exitCode}`,
  };
}
