import { Command } from '@oclif/core';
import { adminClient, adminFlags } from '../../config.js';

export default class AdminCredentials extends Command {
  static override summary = 'List credentials (never their secrets).';
  static override examples = ['<%= config.bin %> admin credentials --url http://127.0.0.1:8787 --json'];
  static override enableJsonFlag = true;
  static override flags = { ...adminFlags };

  async run() {
    const { flags } = await this.parse(AdminCredentials);
    const { credentials } = await (await adminClient(flags)).listCredentials();
    for (const c of credentials) {
      this.log(
        [c.id, c.kind, c.display_name ?? '-', c.revoked_at ? `revoked ${c.revoked_at}` : 'active'].join('  '),
      );
    }
    return { credentials };
  }
}
