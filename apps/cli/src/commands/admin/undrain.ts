import { Args, Command, Flags } from '@oclif/core';
import { adminClient } from '../../config.js';

export default class AdminUndrain extends Command {
  static override summary = 'Take a drain back: the workstation is offered runs again.';
  static override description =
    'For a drain its agent has not acted on yet (asked while the agent was offline, or by mistake). An agent that already heard the drain still finishes its runs and exits; the next `runt workstation run` takes runs, as after any drain.';
  static override examples = ['<%= config.bin %> admin undrain ws_0b6c… --url http://127.0.0.1:8787'];
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
    const { args, flags } = await this.parse(AdminUndrain);
    const { workstation } = await (await adminClient(flags)).undrainWorkstation(args.id);
    this.log(`Undrained ${workstation.id} (${workstation.display_name}): ${workstation.status}.`);
    return { workstation };
  }
}
