import { Args, Command } from '@oclif/core';
import type { Run, RunAttempt } from '@runt/protocol';
import { adminClient, adminFlags } from '../../config.js';
import { relativeTime } from '../../relative-time.js';
import { colourStatus } from '../../status-colour.js';
import { tableLines } from '../../table.js';
import { fleetOf, workstationLabel } from '../../workstation-ref.js';

export default class RunShow extends Command {
  static override summary = 'Show one run: status, placement, exit code, failure, and each attempt.';
  static override examples = [
    '<%= config.bin %> run show run_01HX…',
    '<%= config.bin %> run show run_01HX… --json',
  ];
  static override enableJsonFlag = true;
  static override args = { id: Args.string({ required: true, description: 'run id' }) };
  static override flags = { ...adminFlags };

  async run(): Promise<{ run: Run }> {
    const { args, flags } = await this.parse(RunShow);
    const client = await adminClient(flags);
    const { run } = await client.getRun(args.id);
    if (!this.jsonEnabled()) {
      const fleet = run.workstation_id === null ? [] : await fleetOf(client);
      const rows: [string, string][] = [
        ['id', run.id],
        ['status', colourStatus(run.status)],
        ['runtime', run.runtime],
        ['image', run.image ?? '-'],
        ['command', run.command.length > 0 ? JSON.stringify(run.command) : '-'],
        ['workstation', run.workstation_id === null ? '-' : workstationLabel(fleet, run.workstation_id)],
        ...(run.pending_reason ? [['waiting', run.pending_reason.message] as [string, string]] : []),
        ['attempt', `${run.attempt} of ${run.max_attempts}`],
        ...(run.retry
          ? [
              [
                'retry',
                `on ${run.retry.on.join(', ')} (backoff ${run.retry.backoff.initial_s}s, x${run.retry.backoff.factor}, at most ${run.retry.backoff.max_s}s)`,
              ] as [string, string],
            ]
          : []),
        ...(run.timeout_s ? [['timeout', `${run.timeout_s}s`] as [string, string]] : []),
        ...(run.queue_timeout_s ? [['queue timeout', `${run.queue_timeout_s}s`] as [string, string]] : []),
        ['exit code', run.exit_code === null ? '-' : String(run.exit_code)],
        [
          'failure',
          run.failure_kind
            ? `${run.failure_kind}${run.failure_message ? `: ${run.failure_message}` : ''}`
            : '-',
        ],
        ['created', when(run.created_at)],
        ['started', when(run.started_at)],
        ['finished', when(run.finished_at)],
      ];
      for (const [k, v] of rows) this.log(`${k.padEnd(12)}${v}`);
      if (run.attempts && run.attempts.length > 1) {
        this.log('');
        for (const l of attemptLines(run.attempts)) this.log(l);
      }
    }
    return { run };
  }
}

/** A time in the detail view: how long ago, and the exact ISO time beside it (`-` when unset). */
function when(iso: string | null): string {
  return iso ? `${relativeTime(iso)} (${iso})` : '-';
}

/** Each attempt on its own row: outcome, exit code, where and when, and its events (`run logs --attempt N`). */
function attemptLines(attempts: RunAttempt[]): string[] {
  const head = ['ATTEMPT', 'STATUS', 'EXIT', 'FAILURE', 'STARTED', 'FINISHED', 'EVENTS'];
  const rows = attempts.map((a) => [
    String(a.attempt),
    a.status,
    a.exit_code === null ? '-' : String(a.exit_code),
    a.failure_kind ?? '-',
    a.started_at ? relativeTime(a.started_at) : '-',
    a.finished_at ? relativeTime(a.finished_at) : '-',
    `${a.first_event_seq}-${a.last_event_seq ?? ''}`,
  ]);
  return tableLines(head, rows, { statusColumn: 1 });
}
