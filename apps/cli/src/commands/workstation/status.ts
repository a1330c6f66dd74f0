import { Command } from '@oclif/core';
import { loadCredential } from '@runt/pairing';
import type { ControlPlaneClient } from '@runt/protocol';
import { adminClient, adminFlags, resolveAdmin, workstationClient } from '../../config.js';
import { relativeTime } from '../../relative-time.js';
import { tableLines } from '../../table.js';

export default class WorkstationStatus extends Command {
  static override summary = 'List the fleet: every workstation paired with this control plane.';
  static override examples = [
    '<%= config.bin %> workstation status',
    '<%= config.bin %> workstation status --json',
  ];
  static override description =
    "On a paired machine it asks with the workstation's credential; an operator (--url, or not paired with an admin token from RUNT_ADMIN_TOKEN, --token-file or runt admin login) asks as admin.";
  static override enableJsonFlag = true;
  static override flags = { ...adminFlags };

  async run() {
    const { flags } = await this.parse(WorkstationStatus);
    const paired = await loadCredential().catch(() => undefined);
    const asOperator =
      flags.url !== undefined ||
      flags['token-file'] !== undefined ||
      (!paired?.token && (await resolveAdmin(flags)).token !== undefined);
    const { client, credential }: { client: ControlPlaneClient; credential?: { workstation_id: string } } =
      asOperator ? { client: await adminClient(flags) } : await workstationClient();
    const { workstations } = await client.listWorkstations();
    if (!this.jsonEnabled()) {
      const rows = workstations.map((w) => [
        w.id === credential?.workstation_id ? `${w.display_name} (this machine)` : w.display_name,
        w.status,
        w.listening ? 'yes' : 'no',
        w.runtimes.join(',') || '-',
        w.last_seen_at ? relativeTime(w.last_seen_at) : 'never',
      ]);
      const head = ['NAME', 'STATUS', 'AGENT', 'RUNTIMES', 'LAST SEEN'];
      for (const l of tableLines(head, rows, { statusColumn: 1 })) this.log(l);
    }
    return { workstations };
  }
}
