import { Command, Flags } from '@oclif/core';
import { adminClient, adminFlags } from '../../config.js';

export default class AdminPairingCode extends Command {
  static override summary = 'Mint a one-time pairing code and print the command that pairs a workstation.';
  static override description =
    'The admin token comes from --token-file, RUNT_ADMIN_TOKEN or runt admin login, never from argv.';
  static override examples = [
    'RUNT_ADMIN_TOKEN=$(cat .runt/admin-token) <%= config.bin %> admin pairing-code --url http://127.0.0.1:8787',
    '<%= config.bin %> admin pairing-code --url http://127.0.0.1:8787 --token-file .runt/admin-token',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    ...adminFlags,
    ttl: Flags.integer({ description: 'minutes the code stays valid', default: 10, min: 1, max: 1440 }),
  };

  async run() {
    const { flags } = await this.parse(AdminPairingCode);
    const client = await adminClient(flags);
    const minted = await client.mintPairingCode({ ttl_seconds: flags.ttl * 60 });
    this.log(minted.connect_command);
    return minted;
  }
}
