import { Args, Command } from '@oclif/core';
import { adminClient, adminFlags } from '../../config.js';

export default class AdminRevoke extends Command {
  static override summary =
    'Revoke a credential at once; its workstation goes offline and its agent is cut off.';
  static override examples = ['<%= config.bin %> admin revoke cred_0b6c… --url http://127.0.0.1:8787'];
  static override enableJsonFlag = true;
  static override args = {
    id: Args.string({ required: true, description: 'credential id (see runt admin credentials)' }),
  };
  static override flags = { ...adminFlags };

  async run() {
    const { args, flags } = await this.parse(AdminRevoke);
    const { credential } = await (await adminClient(flags)).revokeCredential(args.id);
    this.log(`Revoked ${credential.id}${credential.display_name ? ` (${credential.display_name})` : ''}.`);
    return { credential };
  }
}
