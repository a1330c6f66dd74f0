import { Args, Command, Flags } from '@oclif/core';
import { adminClient } from '../../config.js';

export default class AdminDrain extends Command {
  static override summary =
    'Drain a workstation: nothing new is offered to it; its agent finishes the runs it holds and exits 0.';
  static override description =
    'Runs offered to it but not yet claimed go back to the queue. Draining ends when the agent stops listening; the next `runt workstation run` on that machine takes runs again.';
  static override examples = ['<%= config.bin %> admin drain ws_0b6c… --url http://127.0.0.1:8787'];
  static override enableJsonFlag = true;
  static override args = {
    id: Args.string({
      required: true,
      description: 'workstation id (runt workstation status --json lists them)',
    }),
  };
  static override flags = {
    url: Flags.string({
      description:
        'control plane URL (default: RUNT_CLOUD_URL, runt admin login, or where this machine is paired)',
    }),
    'token-file': Flags.string({
      description: 'file holding the admin token (default: RUNT_ADMIN_TOKEN, or runt admin login)',
    }),
  };

  async run() {
    const { args, flags } = await this.parse(AdminDrain);
    const { workstation } = await (await adminClient(flags)).drainWorkstation(args.id);
    this.log(`Draining ${workstation.id} (${workstation.display_name}): ${workstation.status}.`);
    return { workstation };
  }
}
