import { Args, Command, Flags } from '@oclif/core';
import {
  followRunEvents as followLive,
  isTerminalRunStatus,
  logBytes,
  type ControlPlaneClient,
  type Run,
  type RunEvent,
  type RunStatus,
} from '@runt/protocol';
import { adminClient, adminFlags, resolveAdmin, type AdminFlags } from '../../config.js';
import { CliError } from '../../errors.js';
import { watchPending } from '../../pending-notice.js';

/**
 * Hands a run's events after `afterSeq` to `onEvent`. Without `follow`, pages through what is
 * there; with it, follows the live event stream (SSE, resumed after drops) until the run is
 * terminal, falling back to paging with a gentle backoff if the stream is unavailable.
 * Resolves with the run's last status, or `undefined` as soon as `until` is true of an event
 * (after `onEvent` saw it).
 *
 * @example
 * const status = await followRunEvents(client, runId, { follow: true, token, onEvent: printLogEvent });
 */
export async function followRunEvents(
  client: ControlPlaneClient,
  runId: string,
  opts: {
    follow: boolean;
    afterSeq?: number;
    token?: string;
    onEvent: (e: RunEvent) => void;
    until?: (e: RunEvent) => boolean;
  },
): Promise<RunStatus | undefined> {
  let after = opts.afterSeq ?? 0;
  if (opts.follow && opts.token) {
    const stop = new AbortController();
    try {
      const live = followLive({
        url: client.url,
        token: opts.token,
        runId,
        afterSeq: after,
        signal: stop.signal,
      });
      for (;;) {
        const next = await live.next();
        if (next.done) {
          if (next.value) return next.value;
          break;
        }
        opts.onEvent(next.value);
        after = next.value.seq;
        if (opts.until?.(next.value)) return undefined;
      }
    } catch (e) {
      if ((e as { status?: number }).status !== 0) throw e;
    } finally {
      stop.abort(); // closes the stream when we stop early, so the process can exit
    }
  }
  let idle = 0;
  for (;;) {
    const page = await client.listEvents(runId, { after_seq: after, limit: 1000 });
    for (const e of page.events) {
      opts.onEvent(e);
      if (opts.until?.(e)) return undefined;
    }
    after = Math.max(after, page.next_after_seq);
    if (page.events.length > 0) {
      idle = 0;
      continue;
    }
    if (!opts.follow || isTerminalRunStatus(page.run_status)) return page.run_status;
    idle++;
    await new Promise((r) => setTimeout(r, Math.min(1_000, 100 * idle)));
  }
}

/**
 * A followed run's end as the CLI reports it, the one home for `submit --follow` and
 * `logs --follow`: exit code 0 when completed, else the run's exit code (1 without one), and a
 * one-line reason on stderr (not with --json).
 */
export function reportRunEnd(run: Run, json: boolean): void {
  process.exitCode = run.status === 'completed' ? 0 : (run.exit_code ?? 1) || 1;
  if (run.status !== 'completed' && !json) {
    process.stderr.write(
      `runt: run ${run.id} ${run.status}${run.failure_kind ? ` (${run.failure_kind})` : ''}${run.failure_message ? `: ${run.failure_message}` : ''}\n`,
    );
  }
}

/** The admin token as `adminClient` reads it, for the live stream. */
export async function adminToken(flags: AdminFlags): Promise<string | undefined> {
  return (await resolveAdmin(flags)).token;
}

/**
 * Writes a `log` event's bytes to stdout or stderr exactly as the workload wrote them (text or
 * base64 events); an attempt the retry policy sends back to the queue is one line on stderr.
 */
export function printLogEvent(e: RunEvent): void {
  if (
    e.type === 'error' &&
    typeof e.payload.retry_in_s === 'number' &&
    typeof e.payload.message === 'string'
  ) {
    process.stderr.write(`runt: ${e.payload.message}\n`);
    return;
  }
  if (e.type !== 'log' || typeof e.payload.data !== 'string') return;
  (e.payload.stream === 'stderr' ? process.stderr : process.stdout).write(logBytes(e.payload));
}

export default class RunLogs extends Command {
  static override summary =
    "Print a run's output; --follow keeps printing until the run ends and exits with its exit code.";
  static override examples = ['<%= config.bin %> run logs run_01HX… --follow'];
  static override args = { id: Args.string({ required: true, description: 'run id' }) };
  static override flags = {
    ...adminFlags,
    follow: Flags.boolean({
      char: 'f',
      description: "keep printing until the run is finished, then exit with the run's exit code",
    }),
    attempt: Flags.integer({ description: 'only the output of this attempt (1 for the first)', min: 1 }),
  };

  async run(): Promise<{ status: RunStatus }> {
    const { args, flags } = await this.parse(RunLogs);
    const client = await adminClient(flags);
    const range =
      flags.attempt === undefined ? undefined : await attemptRange(client, args.id, flags.attempt);
    const onEvent = (e: RunEvent) => {
      if (!range || (e.seq >= range.first && (range.last === null || e.seq <= range.last))) printLogEvent(e);
    };
    const stopWatching = flags.follow
      ? watchPending(client, args.id, (line) => process.stderr.write(`${line}\n`))
      : () => {};
    let status: RunStatus | undefined;
    try {
      status = await followRunEvents(client, args.id, {
        follow: flags.follow,
        token: await adminToken(flags),
        onEvent,
        ...(range ? { afterSeq: range.first - 1 } : {}),
        // a finished attempt's log has an end: a follow stops there
        ...(flags.follow && range?.last != null ? { until: (e: RunEvent) => e.seq >= range.last! } : {}),
      });
    } finally {
      stopWatching();
    }
    if (flags.follow) {
      const { run } = await client.getRun(args.id);
      reportRunEnd(run, false);
      return { status: run.status };
    }
    return { status: status! };
  }
}

/** The event seqs of attempt `n` of a run (`last` null: to the end of the log). */
async function attemptRange(
  client: ControlPlaneClient,
  runId: string,
  n: number,
): Promise<{ first: number; last: number | null }> {
  const { run } = await client.getRun(runId);
  const a = run.attempts?.find((x) => x.attempt === n);
  if (!a)
    throw new CliError(`run ${runId} has no attempt ${n} (it has ${run.attempts?.length ?? run.attempt})`);
  return { first: a.first_event_seq, last: a.last_event_seq };
}
