import type { Logger } from 'pino';
import { backoffDelay, isApiError, maskText, sleep, type ControlPlaneClient } from '@runt/protocol';
import type { RunEventLog } from './run-event-log.js';
import type { Outcome } from './run-outcome.js';

export interface RunReporterOptions {
  /** Reports go as `reportStatusBrief`: the answer is the status and next seq, not the whole run. */
  client: Pick<ControlPlaneClient, 'reportStatusBrief'>;
  runId: string;
  fencingToken: number;
  events: RunEventLog;
  /**
   * The control plane takes events on status reports (and releases the lease with a terminal
   * one): reports carry the queued events instead of flushing them first.
   */
  carryEvents: boolean;
  /** Aborted when the run is dropped or the agent stops: retries end. */
  signal: AbortSignal;
  /** A fenced call was refused for good (4xx other than 408/429, e.g. 409): the run is not ours. */
  onRefused: (reason: string) => void;
  logger: Logger;
  /** The run's secret values: masked in the failure message too, as in its output. */
  secrets?: string[];
}

/**
 * A run's fenced reports to the control plane: `report` sends a status (with the queued events
 * when the control plane takes them), and `retry` carries any fenced call through transient
 * failures with backoff until it is answered, refused (the run is then dropped through
 * `onRefused`) or the run's signal aborts.
 *
 * @example
 * const reporter = new RunReporter({ client, runId, fencingToken, events, carryEvents: true, signal, onRefused: drop, logger });
 * if (await reporter.report({ status: 'completed', exit_code: 0 })) lease.stop();
 */
export class RunReporter {
  constructor(private readonly opts: RunReporterOptions) {}

  /** Sends a status report; `false` when it was refused or the run's signal aborted. */
  async report(reported: Outcome): Promise<boolean> {
    const { client, runId, fencingToken, events, secrets } = this.opts;
    // A failure message may quote the workload or the runtime (an error, a command line): it is
    // shown in the API, the CLI and the panel, so secrets are masked in it as in the output.
    const outcome =
      reported.failure_message && secrets?.length
        ? { ...reported, failure_message: maskText(reported.failure_message, secrets) }
        : reported;
    if (!this.opts.carryEvents) {
      await events.flush();
      return (
        (await this.retry(() =>
          client.reportStatusBrief(runId, { fencing_token: fencingToken, ...outcome }),
        )) !== undefined
      );
    }
    let taken = await events.take();
    const res = await this.retry(async () => {
      try {
        return await client.reportStatusBrief(runId, {
          fencing_token: fencingToken,
          ...outcome,
          ...(taken.length > 0 ? { events: taken } : {}),
        });
      } catch (e) {
        // A control plane with a smaller body limit than the agent assumed: send the events on
        // their own (in batches it takes), then the report without them.
        if (!isApiError(e) || e.status !== 413 || taken.length === 0) throw e;
        events.settle(undefined);
        taken = [];
        await events.flush();
        return await client.reportStatusBrief(runId, { fencing_token: fencingToken, ...outcome });
      }
    });
    events.settle(res?.next_event_seq !== undefined ? taken : undefined);
    return res !== undefined;
  }

  /** Retries a fenced call through transient failures; `undefined` once it was refused (4xx) or the signal aborted. */
  async retry<T>(call: () => Promise<T>): Promise<T | undefined> {
    const { signal } = this.opts;
    for (let attempt = 1; !signal.aborted; attempt++) {
      try {
        return await call();
      } catch (e) {
        if (isApiError(e) && e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429) {
          this.opts.onRefused(`${e.status} ${e.message}`);
          return undefined;
        }
        this.opts.logger.debug({ run_id: this.opts.runId, err: e, attempt }, 'report failed; retrying');
        if (!(await sleep(backoffDelay(attempt, { baseMs: 200, capMs: 10_000 }), signal))) return undefined;
      }
    }
    return undefined;
  }
}
