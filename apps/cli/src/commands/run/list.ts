import { Command, Flags } from '@oclif/core';
import { runStatusSchema, type Run } from '@runt/protocol';
import { adminClient, adminFlags } from '../../config.js';
import { relativeTime } from '../../relative-time.js';
import { tableLines } from '../../table.js';
import { fleetOf, workstationIdOf } from '../../workstation-ref.js';

export default class RunList extends Command {
  static override summary = 'List runs, newest first.';
  static override examples = [
    '<%= config.bin %> run list',
    '<%= config.bin %> run list --status running --json',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    ...adminFlags,
    status: Flags.option({ options: runStatusSchema.options, description: 'only runs in this status' })(),
    workstation: Flags.string({ description: 'only runs on this workstation (its name or id)' }),
    limit: Flags.integer({ description: 'at most this many (1-500)', default: 50, min: 1, max: 500 }),
  };

  async run(): Promise<{ runs: Run[]; next_cursor: string | null }> {
    const { flags } = await this.parse(RunList);
    const client = await adminClient(flags);
    // Names need the fleet: read it for the table and for --workstation, not for a bare --json.
    const fleet = !this.jsonEnabled() || flags.workstation !== undefined ? await fleetOf(client) : [];
    const workstationId =
      flags.workstation === undefined ? undefined : workstationIdOf(fleet, flags.workstation);
    const page = await client.listRuns({
      ...(flags.status ? { status: flags.status } : {}),
      ...(workstationId ? { workstation_id: workstationId } : {}),
      limit: flags.limit,
    });
    if (!this.jsonEnabled()) {
      const head = ['ID', 'STATUS', 'RUNTIME', 'WORKSTATION', 'EXIT', 'CREATED', 'WAITING'];
      const rows = page.runs.map((r) => [
        r.id,
        r.status,
        r.runtime,
        r.workstation_id === null
          ? '-'
          : (fleet.find((w) => w.id === r.workstation_id)?.display_name ?? r.workstation_id),
        r.exit_code === null ? '-' : String(r.exit_code),
        relativeTime(r.created_at),
        r.pending_reason?.message ?? '',
      ]);
      for (const l of tableLines(head, rows, { statusColumn: 1 })) this.log(l);
    }
    return page;
  }
}
