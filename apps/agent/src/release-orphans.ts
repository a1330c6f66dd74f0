import type { Logger } from 'pino';
import type { ControlPlaneClient } from '@runt/protocol';
import { askUntilAnswered } from './ask-until-answered.js';

export interface ReleaseOrphansOptions {
  client: Pick<ControlPlaneClient, 'workstationRuns' | 'releaseRun'>;
  workstationId: string;
  /** Runner ids of the earlier agents on this state dir (`recordRunner`): dead, since this agent holds `agent.lock`. */
  predecessors: readonly string[];
  /** Every run the journal held at this start (re-adoption handles those). */
  journaled: ReadonlySet<string>;
  /**
   * How long a listing or release the control plane does not answer (restarting, unreachable) is
   * asked again (ms): about a lease, so these runs' leases have not run out meanwhile.
   */
  boundMs: number;
  /** Backoff between those tries (tests shorten it). */
  backoff?: { baseMs: number; capMs: number };
  logger: Logger;
}

/** Pages of this size; a workstation holds a few runs, so one page is the rule. */
const PAGE = 100;

/**
 * Hands back the runs the control plane still gives to a dead predecessor on this state dir
 * and that its journal never held: `accepted` runs leased to one of `predecessors` and not in
 * `journaled`. A workload starts only after its run is durable in the journal (`RunExecution`
 * saves it when it takes the run and waits for the save of its instance id before starting it),
 * so such a run never
 * started: typically one the scheduler claimed on offer for the predecessor's runner, whose
 * agent was killed before it took it (or whose answer was lost with it). Left alone, its lease
 * runs out and the sweeper fails it `runner-lost` (an expired `accepted` run is never re-queued);
 * released, fenced by its token, it goes back to the queue (issue 8, chaos). Runs of other
 * runners are left alone (another agent with this credential elsewhere may hold them), and so
 * are `running` ones (they ran). A control plane that does not answer (a restart) is asked again
 * for up to `boundMs` (chaos: a listing refused while the control plane restarted left a
 * never-started run to fail `runner-lost`). Returns the ids released; a failure is logged, never
 * thrown (the lease then runs out as before).
 *
 * @example
 * await releaseOrphans({ client, workstationId: 'ws_1', predecessors: ['ws_1/9c…'], journaled: new Set(), logger });
 */
export async function releaseOrphans(o: ReleaseOrphansOptions): Promise<string[]> {
  if (o.predecessors.length === 0) return [];
  const holders = new Set(o.predecessors.map((r) => `${o.workstationId}/${r}`));
  const released: string[] = [];
  const ask = <T>(call: () => Promise<T>) =>
    askUntilAnswered(call, { boundMs: o.boundMs, ...(o.backoff ? { backoff: o.backoff } : {}) });
  try {
    let cursor: string | undefined;
    do {
      const listed = await ask(() =>
        o.client.workstationRuns(o.workstationId, {
          status: 'accepted',
          limit: PAGE,
          ...(cursor ? { cursor } : {}),
        }),
      );
      if (!('answer' in listed)) throw 'refused' in listed ? listed.refused : listed.unanswered;
      const page = listed.answer;
      for (const run of page.runs) {
        const lease = run.lease;
        if (!lease || !holders.has(lease.holder) || o.journaled.has(run.id) || run.started_at !== null)
          continue;
        const r = await ask(() => o.client.releaseRun(run.id, { fencing_token: lease.fencing_token }));
        if ('answer' in r) {
          released.push(run.id);
          o.logger.info(
            { run_id: run.id, holder: lease.holder },
            'released a run held by this state dir’s previous agent that it never started',
          );
        } else {
          // Refused (fenced: it ended or moved on meanwhile) or unanswered: its lease decides.
          o.logger.debug(
            { run_id: run.id, err: 'refused' in r ? r.refused : r.unanswered },
            'releasing an orphaned run failed',
          );
        }
      }
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  } catch (e) {
    o.logger.warn({ err: e }, 'cannot list the runs held by this state dir’s previous agents');
  }
  return released;
}
