import { Args, Command } from '@oclif/core';
import { openWorkspaces } from '../../workspaces.js';

export default class WorkspaceTerminal extends Command {
  static override summary = 'Open an interactive shell in a workspace (starting it first when stopped).';
  static override examples = ['<%= config.bin %> workspace terminal my-repo'];
  static override args = { workspace: Args.string({ required: true, description: 'workspace name or id' }) };

  async run() {
    const { args } = await this.parse(WorkspaceTerminal);
    const { manager, close } = openWorkspaces();
    const stdin = process.stdin;
    const stdout = process.stdout;
    try {
      const { session } = await manager.terminal(args.workspace, {
        cols: stdout.columns || 80,
        rows: stdout.rows || 24,
      });
      const stopOutput = session.onData((d) => stdout.write(d));
      const onInput = (d: Buffer) => session.write(d.toString('utf8'));
      const onResize = () => session.resize(stdout.columns || 80, stdout.rows || 24);
      if (stdin.isTTY) stdin.setRawMode(true);
      stdin.on('data', onInput);
      stdout.on('resize', onResize);
      try {
        const status = await session.exit;
        process.exitCode = status.exitCode;
      } finally {
        stopOutput();
        stdin.off('data', onInput);
        stdout.off('resize', onResize);
        if (stdin.isTTY) stdin.setRawMode(false);
        stdin.pause();
      }
    } finally {
      await close();
    }
  }
}
