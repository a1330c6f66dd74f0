import { Command } from '@oclif/core';
import { workstationClient } from '../../config.js';

export default class WorkstationStatus extends Command {
  static override summary = 'List the fleet: every workstation paired with this control plane.';
  static override examples = ['<%= config.bin %> workstation status', '<%= config.bin %> workstation status --json'];
  static override enableJsonFlag = true;

  async run() {
    const { client, credential } = await workstationClient();
    const { workstations } = await client.listWorkstations();
    if (!this.jsonEnabled()) {
      const rows = workstations.map((w) => [
        w.id === credential.workstation_id ? `${w.display_name} (this machine)` : w.display_name,
        w.status,
        w.listening ? 'yes' : 'no',
        w.runtimes.join(',') || '-',
        w.last_seen_at ?? 'never',
      ]);
      printTable(this.log.bind(this), ['NAME', 'STATUS', 'AGENT', 'RUNTIMES', 'LAST SEEN'], rows);
    }
    return { workstations };
  }
}

function printTable(log: (s: string) => void, head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  log(line(head));
  for (const r of rows) log(line(r));
}
