import { Args, Command, Flags } from '@oclif/core';
import { followRunEvents as followLive, isTerminalRunStatus, logBytes, type ControlPlaneClient, type RunEvent, type RunStatus } from '@runt/protocol';
import { adminClient, resolveAdmin, type AdminFlags } from '../../config.js';
import { watchPending } from '../../pending-notice.js';

export const adminFlags = {
  url: Flags.string({ description: 'control plane URL (default: RUNT_CLOUD_URL, runt admin login, or where this machine is paired)' }),
  'token-file': Flags.string({ description: 'file holding the admin token (default: RUNT_ADMIN_TOKEN, or runt admin login)' }),
};

/**
 * Hands a run's events after `afterSeq` to `onEvent`. Without `follow`, pages through what is
 * there; with it, follows the live event stream (SSE, resumed after drops) until the run is
 * terminal, falling back to paging with a gentle backoff if the stream is unavailable.
 * Resolves with the run's last status.
 *
 * @example
 * const status = await followRunEvents(client, runId, { follow: true, token, onEvent: printLogEvent });
 */
export async function followRunEvents(
  client: ControlPlaneClient,
  runId: string,
  opts: { follow: boolean; afterSeq?: number; token?: string; onEvent: (e: RunEvent) => void },
): Promise<RunStatus> {
  let after = opts.afterSeq ?? 0;
  if (opts.follow && opts.token) {
    try {
      const live = followLive({ url: client.url, token: opts.token, runId, afterSeq: after });
      for (;;) {
        const next = await live.next();
        if (next.done) {
          if (next.value) return next.value;
          break;
        }
        opts.onEvent(next.value);
        after = next.value.seq;
      }
    } catch (e) {
      if ((e as { status?: number }).status !== 0) throw e;
    }
  }
  let idle = 0;
  for (;;) {
    const page = await client.listEvents(runId, { after_seq: after, limit: 1000 });
    for (const e of page.events) opts.onEvent(e);
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

/** The admin token as `adminClient` reads it, for the live stream. */
export async function adminToken(flags: AdminFlags): Promise<string | undefined> {
  return (await resolveAdmin(flags)).token;
}

/** Writes a `log` event's bytes to stdout or stderr exactly as the workload wrote them (text or base64 events). */
export function printLogEvent(e: RunEvent): void {
  if (e.type !== 'log' || typeof e.payload.data !== 'string') return;
  (e.payload.stream === 'stderr' ? process.stderr : process.stdout).write(logBytes(e.payload));
}

export default class RunLogs extends Command {
  static override summary = "Print a run's output; --follow keeps printing until the run ends.";
  static override examples = ['<%= config.bin %> run logs run_01HX… --follow'];
  static override args = { id: Args.string({ required: true, description: 'run id' }) };
  static override flags = {
    ...adminFlags,
    follow: Flags.boolean({ char: 'f', description: 'keep printing until the run is finished' }),
  };

  async run(): Promise<{ status: RunStatus }> {
    const { args, flags } = await this.parse(RunLogs);
    const client = await adminClient(flags);
    const stopWatching = flags.follow ? watchPending(client, args.id, (line) => process.stderr.write(`${line}\n`)) : () => {};
    try {
      const status = await followRunEvents(client, args.id, { follow: flags.follow, token: await adminToken(flags), onEvent: printLogEvent });
      return { status };
    } finally {
      stopWatching();
    }
  }
}
