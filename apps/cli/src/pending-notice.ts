import type { ControlPlaneClient, Run } from '@runt/protocol';

/** How often a follower re-reads a queued run to say why it still waits. */
export const PENDING_POLL_MS = 2_000;

/** One line saying why a queued run waits, or undefined when it is not waiting for a reason. */
export function pendingLine(run: Pick<Run, 'id' | 'status' | 'pending_reason'>): string | undefined {
  if (run.status !== 'queued' || !run.pending_reason) return undefined;
  return `runt: run ${run.id} is queued: ${run.pending_reason.message}`;
}

/**
 * While a followed run is queued, re-reads it every `PENDING_POLL_MS` and writes why it is not
 * placed (on stderr, once per change of reason), as `runt run submit --follow` and
 * `runt run logs --follow` wait. Stops by itself once the run leaves `queued`; call the returned
 * function to stop earlier.
 *
 * @example
 * const stop = watchPending(client, run.id, (l) => process.stderr.write(`${l}\n`));
 * await followRunEvents(…); stop();
 */
export function watchPending(
  client: ControlPlaneClient,
  runId: string,
  write: (line: string) => void,
  pollMs = PENDING_POLL_MS,
): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let last: string | undefined;
  const check = async (): Promise<void> => {
    if (stopped) return;
    let run: Run;
    try {
      ({ run } = await client.getRun(runId));
    } catch {
      // The follower itself reports an unreachable control plane; this is only a hint.
      timer = setTimeout(() => void check(), pollMs);
      return;
    }
    if (stopped || run.status !== 'queued') return;
    const line = pendingLine(run);
    if (line && line !== last) write(line);
    last = line;
    timer = setTimeout(() => void check(), pollMs);
  };
  void check();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
