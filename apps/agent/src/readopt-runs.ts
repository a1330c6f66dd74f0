import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { ControlPlaneClient } from '@runt/protocol';
import type { Runtime } from '@runt/runtime-spi';
import { askUntilAnswered } from './ask-until-answered.js';
import { RUN_ID_LABEL, WORKSTATION_LABEL } from './run-prepare.js';
import type { RunState, RunStateStore } from './run-state-store.js';

/** When a saved lease was confirmed still ours: when the renewal was sent and the expiry it got. */
export interface ConfirmedLease {
  sentAt: number;
  expiresAt: string;
}

export interface ReadoptRunsOptions {
  client: Pick<ControlPlaneClient, 'heartbeatRun' | 'reportStatus' | 'releaseRun' | 'claimRun'>;
  /** The available runtimes, by name. */
  runtimes: ReadonlyMap<string, Runtime>;
  store: RunStateStore;
  workstationId: string;
  leaseMs: number;
  stopTimeoutMs: number;
  /**
   * How long a heartbeat the control plane does not answer (restarting, unreachable) is asked
   * again before the run is judged without its answer (default `leaseMs`).
   */
  answerBoundMs?: number;
  /** Backoff between those tries (tests shorten it). */
  backoff?: { baseMs: number; capMs: number };
  /** Resume a run whose instance survived and whose lease is still ours. */
  adopt: (
    runtime: string,
    state: RunState,
    confirmed: ConfirmedLease,
    secrets: Record<string, string>,
  ) => void;
  logger: Logger;
}

/**
 * After a restart: resumes (through `adopt`) every run whose instance survived and whose lease
 * a heartbeat confirms is still ours — or that the control plane does not answer about within
 * `answerBoundMs` (the run's lease loop keeps asking; only a refusal stops a workload); stops and
 * removes the instances of runs the control plane says are not ours any more; releases (so re-queues) a run whose lease is ours but whose instance id was never
 * saved (a workload starts only after its id is saved, so it never ran); reports `failed`
 * (`internal`) and releases a run whose lease is ours but whose saved workload is gone; and
 * deletes the state files of everything not resumed.
 *
 * @example
 * await readoptRuns({ client, runtimes, store, workstationId, leaseMs: 30_000, stopTimeoutMs: 10_000, adopt, logger });
 */
export async function readoptRuns(opts: ReadoptRunsOptions): Promise<void> {
  const { client, store, logger } = opts;
  const states = new Map((await store.list()).map((s) => [s.run_id, s]));
  const seen = new Set<string>();
  for (const [name, runtime] of opts.runtimes) {
    let instances;
    try {
      instances = await runtime.list({ labels: { [WORKSTATION_LABEL]: opts.workstationId } });
    } catch (e) {
      logger.warn({ runtime: name, err: e }, 'cannot list instances for re-adoption');
      continue;
    }
    for (const inst of instances) {
      const runId = inst.labels[RUN_ID_LABEL];
      const state = runId ? states.get(runId) : undefined;
      let confirmed =
        runId && state && state.runtime === name && state.instance_id === inst.id
          ? await leaseOf(opts, state)
          : undefined;
      if (confirmed === 'unanswered') {
        // Not a refusal: the control plane was not reachable (a restart, issue 8 chaos). The run
        // is resumed with its lease unconfirmed; the lease loop asks on and stops the workload
        // only if the control plane refuses (as after an outage while the agent was up).
        logger.warn(
          { run_id: runId, instance_id: inst.id },
          'the control plane did not answer whether a re-adopted run is still ours; resuming it and asking again',
        );
        confirmed = { sentAt: performance.now(), expiresAt: new Date().toISOString() };
      }
      if (runId && state && confirmed && confirmed !== 'refused') {
        // Secret values are never saved: asked for again (the same runner's claim answers with
        // them). Without them the output could not be masked, so such a run is not resumed.
        const secrets = await secretsAgain(opts, state);
        if (secrets) {
          seen.add(runId);
          opts.adopt(name, state, confirmed, secrets);
          continue;
        }
        logger.warn(
          { run_id: runId },
          'cannot fetch the secrets of a re-adopted run to mask its output; failing it',
        );
        await runtime.stop(inst.id, { timeoutMs: opts.stopTimeoutMs }).catch(() => undefined);
        await runtime.remove(inst.id).catch(() => undefined);
        await client
          .reportStatus(runId, {
            fencing_token: state.fencing_token,
            status: 'failed',
            failure_kind: 'internal',
            failure_message:
              'the agent restarted and could not fetch the run’s secrets to mask its output again',
          })
          .catch(() => undefined);
        await store.remove(runId);
        seen.add(runId);
        continue;
      }
      logger.info(
        { runtime: name, instance_id: inst.id, run_id: runId },
        'stopping an instance whose run is no longer ours',
      );
      await runtime.stop(inst.id, { timeoutMs: opts.stopTimeoutMs }).catch(() => undefined);
      await runtime.remove(inst.id).catch(() => undefined);
      if (runId && state && !seen.has(runId)) {
        await store.remove(runId);
        // refused: settled, not asked again below
        if (confirmed === 'refused') seen.add(runId);
      }
    }
  }
  for (const [runId, state] of states) {
    if (seen.has(runId)) continue;
    const lease = await leaseOf(opts, state);
    if (lease === 'unanswered') {
      // Kept in the journal: the next start asks again (its lease decides meanwhile).
      logger.warn(
        { run_id: runId },
        'the control plane did not answer about a journaled run; left for later',
      );
      continue;
    }
    if (lease !== 'refused') {
      if (state.instance_id === undefined) {
        // Claimed, but the agent died before saving an instance id, and a workload is only ever
        // started after its id is saved: it never ran. Give the attempt back (re-queued).
        logger.info({ run_id: runId }, 'releasing a claimed run whose workload never started');
        const released = await askUntilAnswered(
          () => client.releaseRun(runId, { fencing_token: state.fencing_token }),
          { boundMs: opts.answerBoundMs ?? opts.leaseMs, ...(opts.backoff ? { backoff: opts.backoff } : {}) },
        );
        // Unanswered: kept, so the next start releases it (its lease decides meanwhile).
        if (!('unanswered' in released)) await store.remove(runId);
        continue;
      }
      // The lease is still ours but the workload (which may have run) is gone: say so instead of leaving it to the sweeper.
      logger.warn(
        { run_id: runId, instance_id: state.instance_id, reported_running: state.ready },
        'the workload disappeared while the agent was down; failing the run',
      );
      await client
        .reportStatus(runId, {
          fencing_token: state.fencing_token,
          status: 'failed',
          failure_kind: 'internal',
          failure_message: 'the workload disappeared while the agent was down',
        })
        .catch(() => undefined);
      await client.releaseRun(runId, { fencing_token: state.fencing_token }).catch(() => undefined);
    }
    await store.remove(runId);
  }
}

/**
 * The secret values of a run being re-adopted (none asked for when it has none): a claim by the
 * runner that holds it answers with the same token and the values. `undefined` when that fails
 * or answers another token.
 */
async function secretsAgain(
  opts: ReadoptRunsOptions,
  state: RunState,
): Promise<Record<string, string> | undefined> {
  const names = state.secret_env_names ?? [];
  if (names.length === 0) return {};
  try {
    const claim = await opts.client.claimRun(state.run_id, {
      runner_id: state.runner_id,
      lease_ms: opts.leaseMs,
    });
    const secrets = claim.secret_env ?? {};
    if (claim.fencing_token !== state.fencing_token || names.some((n) => secrets[n] === undefined))
      return undefined;
    return secrets;
  } catch {
    return undefined;
  }
}

/**
 * Renews a saved lease: when it is still ours, when the answered renewal was sent and the expiry
 * it got; `refused` when the control plane says it is not; `unanswered` when it did not answer
 * within `answerBoundMs` (asked again meanwhile).
 */
async function leaseOf(
  opts: ReadoptRunsOptions,
  state: RunState,
): Promise<ConfirmedLease | 'refused' | 'unanswered'> {
  let sentAt = performance.now();
  const asked = await askUntilAnswered(
    () => {
      sentAt = performance.now();
      return opts.client.heartbeatRun(state.run_id, {
        fencing_token: state.fencing_token,
        lease_ms: opts.leaseMs,
      });
    },
    { boundMs: opts.answerBoundMs ?? opts.leaseMs, ...(opts.backoff ? { backoff: opts.backoff } : {}) },
  );
  if ('answer' in asked) return { sentAt, expiresAt: asked.answer.expires_at };
  return 'refused' in asked ? 'refused' : 'unanswered';
}
