import { Args, Command } from '@oclif/core';
import type { Run } from '@runt/protocol';
import { adminClient, adminFlags } from '../../config.js';

export default class RunCancel extends Command {
  static override summary = 'Cancel a run: the agent stops the workload and reports it cancelled.';
  static override examples = ['<%= config.bin %> run cancel run_01HX…'];
  static override enableJsonFlag = true;
  static override args = { id: Args.string({ required: true, description: 'run id' }) };
  static override flags = { ...adminFlags };

  async run(): Promise<{ run: Run }> {
    const { args, flags } = await this.parse(RunCancel);
    const client = await adminClient(flags);
    const { run } = await client.cancelRun(args.id);
    if (!this.jsonEnabled())
      this.log(`${run.id} ${run.status === 'cancelled' ? 'cancelled' : 'cancel requested'}`);
    return { run };
  }
}
