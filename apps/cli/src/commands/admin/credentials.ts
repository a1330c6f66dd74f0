import { Command } from '@oclif/core';
import { adminClient, adminFlags } from '../../config.js';
import { relativeTime } from '../../relative-time.js';
import { tableLines } from '../../table.js';

export default class AdminCredentials extends Command {
  static override summary = 'List credentials (never their secrets).';
  static override examples = ['<%= config.bin %> admin credentials --url http://127.0.0.1:8787 --json'];
  static override enableJsonFlag = true;
  static override flags = { ...adminFlags };

  async run() {
    const { flags } = await this.parse(AdminCredentials);
    const { credentials } = await (await adminClient(flags)).listCredentials();
    if (!this.jsonEnabled()) {
      const head = ['ID', 'KIND', 'NAME', 'STATUS', 'CREATED', 'LAST USED'];
      const rows = credentials.map((c) => [
        c.id,
        c.kind,
        c.display_name ?? '-',
        c.revoked_at ? 'revoked' : 'active',
        relativeTime(c.created_at),
        c.last_used_at ? relativeTime(c.last_used_at) : 'never',
      ]);
      for (const l of tableLines(head, rows, { statusColumn: 3 })) this.log(l);
    }
    return { credentials };
  }
}
