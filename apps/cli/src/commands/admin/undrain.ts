import { Command } from '@oclif/core';
import { adminFlags, workstationIdArg } from '../../config.js';
import { setDrain } from './drain.js';

export default class AdminUndrain extends Command {
  static override summary = 'Take a drain back: the workstation is offered runs again.';
  static override description =
    'For a drain its agent has not acted on yet (asked while the agent was offline, or by mistake). An agent that already heard the drain still finishes its runs and exits; the next `runt workstation run` takes runs, as after any drain.';
  static override examples = ['<%= config.bin %> admin undrain ws_0b6c… --url http://127.0.0.1:8787'];
  static override enableJsonFlag = true;
  static override args = { id: workstationIdArg };
  static override flags = { ...adminFlags };

  async run() {
    const { args, flags } = await this.parse(AdminUndrain);
    return setDrain(this, 'undrain', args.id, flags);
  }
}
