import { Command, Flags } from '@oclif/core';
import { runStatusSchema, type Run } from '@runt/protocol';
import { adminClient } from '../../config.js';
import { adminFlags } from './logs.js';

export default class RunList extends Command {
  static override summary = 'List runs, newest first.';
  static override examples = ['<%= config.bin %> run list', '<%= config.bin %> run list --status running --json'];
  static override enableJsonFlag = true;
  static override flags = {
    ...adminFlags,
    status: Flags.option({ options: runStatusSchema.options, description: 'only runs in this status' })(),
    workstation: Flags.string({ description: 'only runs on this workstation id' }),
    limit: Flags.integer({ description: 'at most this many (1-500)', default: 50, min: 1, max: 500 }),
  };

  async run(): Promise<{ runs: Run[]; next_cursor: string | null }> {
    const { flags } = await this.parse(RunList);
    const client = await adminClient(flags);
    const page = await client.listRuns({
      ...(flags.status ? { status: flags.status } : {}),
      ...(flags.workstation ? { workstation_id: flags.workstation } : {}),
      limit: flags.limit,
    });
    if (!this.jsonEnabled()) {
      const head = ['ID', 'STATUS', 'RUNTIME', 'WORKSTATION', 'EXIT', 'CREATED', 'WAITING'];
      const rows = page.runs.map((r) => [r.id, r.status, r.runtime, r.workstation_id ?? '-', r.exit_code === null ? '-' : String(r.exit_code), r.created_at, r.pending_reason?.message ?? '']);
      const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
      const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
      this.log(line(head));
      for (const r of rows) this.log(line(r));
    }
    return page;
  }
}
