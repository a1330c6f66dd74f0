import { Args, Command, Flags } from '@oclif/core';
import type { RunCommand, RunEvent } from '@runt/protocol';
import { adminClient, adminFlags } from '../../config.js';
import { CliError } from '../../errors.js';
import { adminToken, followRunEvents, printLogEvent } from './logs.js';

const COMMAND_ENDS = new Set(['completed', 'failed', 'cancelled']);

export default class RunExec extends Command {
  static override summary =
    "Run a command in a live run's instance: prints its output and exits with its exit code (--detach only queues it).";
  static override examples = [
    '<%= config.bin %> run exec run_01HX… -- /bin/sh -c "ls -la"',
    '<%= config.bin %> run exec --detach run_01HX… -- ./reindex.sh',
  ];
  static override strict = false;
  static override enableJsonFlag = true;
  static override args = { id: Args.string({ required: true, description: 'run id' }) };
  static override flags = {
    ...adminFlags,
    detach: Flags.boolean({
      char: 'd',
      description: "only queue the command: print its id and return (its output lands in the run's logs)",
    }),
  };

  async run(): Promise<{ command: RunCommand }> {
    const { args, flags, argv } = await this.parse(RunExec);
    const command = (argv as string[]).slice(1).filter((a, i) => !(i === 0 && a === '--'));
    if (command.length === 0) throw new CliError('missing the command: runt run exec <id> -- cmd args…');
    const client = await adminClient(flags);
    const queued = await client.queueCommand(args.id, { type: 'exec', command });
    const id = queued.command.id;
    const json = this.jsonEnabled();
    if (flags.detach) {
      if (!json) this.log(id);
      return queued;
    }
    // Like `docker exec`: the command's own output, then its exit code as ours. Its events are
    // the run's events carrying its command_id; the run's own output is not printed.
    let end: RunEvent | undefined;
    const runStatus = await followRunEvents(client, args.id, {
      follow: true,
      token: await adminToken(flags),
      onEvent: (e) => {
        if (e.payload.command_id !== id) return;
        if (e.type === 'log' && !json) printLogEvent(e);
        if (e.type === 'command_status' && COMMAND_ENDS.has(String(e.payload.state))) end = e;
      },
      until: () => end !== undefined,
    });
    const done =
      (await client.listCommands(args.id, queued.command.seq - 1)).commands.find((c) => c.id === id) ??
      queued.command;
    if (!end)
      throw new CliError(`run ${args.id} ended (${runStatus ?? 'unknown'}) before command ${id} finished`);
    const state = String(end.payload.state);
    const exitCode = typeof end.payload.exit_code === 'number' ? end.payload.exit_code : undefined;
    process.exitCode = state === 'completed' ? 0 : (exitCode ?? 1) || 1;
    if (state !== 'completed' && !json) {
      const why =
        typeof end.payload.message === 'string'
          ? `: ${end.payload.message}`
          : exitCode !== undefined
            ? `: exited with code ${exitCode}`
            : '';
      process.stderr.write(`runt: command ${id} ${state}${why}\n`);
    }
    return { command: done };
  }
}
