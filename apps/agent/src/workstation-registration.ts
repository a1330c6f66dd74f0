import { availableParallelism, hostname, totalmem } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import {
  backoffDelay,
  isApiError,
  sleep,
  type ControlPlaneClient,
  type RegisterWorkstationRequest,
  type Workstation,
} from '@runt/protocol';
import { AgentError } from './agent-error.js';
import type { ReachReport } from './reachability.js';

export interface WorkstationRegistrationOptions {
  client: Pick<ControlPlaneClient, 'registerWorkstation'>;
  displayName?: string | undefined;
  maxRuns: number;
  /** Runs taken ahead of a free slot (`--prefetch`, default 0). */
  prefetch?: number;
  labels: Record<string, string>;
  /** Reported as `agent_version`. */
  version: string;
  /** The runtimes offered right now. */
  runtimes: () => string[];
  /** Ends the retries of `register(…, { untilDone: true })`. */
  signal: AbortSignal;
  /** Told of each attempt's outcome: an outage is logged once there, not per retry. */
  reach?: ReachReport;
  logger: Logger;
}

/**
 * What the agent tells the control plane about its workstation (`POST /api/workstations`, and
 * the link's `register` message): display name, host, cpu count, memory, `max_runs`, `prefetch`, runtimes,
 * labels, version and whether it is listening for offers.
 *
 * @example
 * const reg = new WorkstationRegistration({ client, maxRuns: 4, labels: {}, version: '1.0.0', runtimes: () => ['process'], signal, logger });
 * const ws = await reg.register(true, { untilDone: true }); // ws.id, ws.status
 */
export class WorkstationRegistration {
  constructor(private readonly opts: WorkstationRegistrationOptions) {}

  /** The registration body; `listening: false` when the agent takes no offers (draining, stopping). */
  body(listening: boolean): RegisterWorkstationRequest {
    return {
      display_name: this.opts.displayName?.trim() || hostname().split('.')[0] || 'workstation',
      hostname: hostname(),
      cpu_count: availableParallelism(),
      memory_bytes: totalmem(),
      max_runs: this.opts.maxRuns,
      // Always, 0 too: the control plane keeps a registered value the body leaves out.
      prefetch: this.opts.prefetch ?? 0,
      runtimes: this.opts.runtimes(),
      labels: this.opts.labels,
      agent_version: this.opts.version,
      listening,
    };
  }

  /**
   * Registers over HTTP and resolves with the workstation as the control plane sees it. A
   * refused credential (401/403) rejects with `AgentError('unauthorized')`. Other failures
   * reject, or with `untilDone` are retried with backoff (0.5 s doubling to 30 s) until the
   * signal aborts, which resolves `undefined`.
   */
  async register(listening: boolean, opts: { untilDone?: boolean } = {}): Promise<Workstation | undefined> {
    for (let attempt = 1; ; attempt++) {
      const started = performance.now();
      try {
        const { workstation } = await this.opts.client.registerWorkstation(this.body(listening));
        this.opts.reach?.reached();
        return workstation;
      } catch (e) {
        if (isApiError(e) && (e.status === 401 || e.status === 403)) {
          throw new AgentError(
            'unauthorized',
            `the control plane refused this workstation's credential: ${e.message} (revoked? pair again with runt workstation connect)`,
            { cause: e },
          );
        }
        if (!opts.untilDone) throw e;
        const delay = backoffDelay(attempt, { baseMs: 500, capMs: 30_000 });
        if (!this.opts.reach?.failed(e, 'registration', started))
          this.opts.logger.warn({ err: e, retry_in_ms: delay }, 'registration failed; retrying');
        if (!(await sleep(delay, this.opts.signal))) return undefined;
      }
    }
  }
}
