import { Args, Command } from '@oclif/core';
import type { RunCommand } from '@runt/protocol';
import { adminClient } from '../../config.js';
import { CliError } from '../../errors.js';
import { adminFlags } from './logs.js';

export default class RunExec extends Command {
  static override summary = "Queue a command into a live run (executed in the run's instance; output appears in its logs).";
  static override examples = ['<%= config.bin %> run exec run_01HX… -- /bin/sh -c "ls -la"'];
  static override strict = false;
  static override enableJsonFlag = true;
  static override args = { id: Args.string({ required: true, description: 'run id' }) };
  static override flags = { ...adminFlags };

  async run(): Promise<{ command: RunCommand }> {
    const { args, flags, argv } = await this.parse(RunExec);
    const command = (argv as string[]).slice(1).filter((a, i) => !(i === 0 && a === '--'));
    if (command.length === 0) throw new CliError('missing the command: runt run exec <id> -- cmd args…');
    const client = await adminClient(flags);
    const queued = await client.queueCommand(args.id, { type: 'exec', command });
    if (!this.jsonEnabled()) this.log(queued.command.id);
    return queued;
  }
}
