import { Args, Command, Flags } from '@oclif/core';
import { CliError } from '../../errors.js';
import { CLI_RUNTIMES } from '../../runtimes.js';
import { openWorkspaces, workspaceJson } from '../../workspaces.js';

export default class WorkspaceInit extends Command {
  static override summary =
    'Create a local workspace from a sources directory, in the runtime you name, and start it.';
  static override examples = [
    '<%= config.bin %> workspace init ./my-repo --runtime process',
    '<%= config.bin %> workspace init ./my-repo --runtime docker --image runt-test/busybox:latest --name demo',
  ];
  static override enableJsonFlag = true;
  static override args = { sources: Args.string({ required: true, description: 'the sources directory' }) };
  static override flags = {
    runtime: Flags.string({
      description: `runtime to use: ${CLI_RUNTIMES.join(', ')} (default: RUNT_DEFAULT_RUNTIME)`,
    }),
    name: Flags.string({ description: 'workspace name (default: the directory name)' }),
    config: Flags.string({
      description: 'a config file handed to the workspace (mounted read-only / RUNT_CONFIG_PATH)',
    }),
    image: Flags.string({ description: 'image for container runtimes (default: RUNT_DEFAULT_IMAGE)' }),
  };

  async run() {
    const { args, flags } = await this.parse(WorkspaceInit);
    const runtime = flags.runtime ?? process.env.RUNT_DEFAULT_RUNTIME;
    if (!runtime)
      throw new CliError(
        `missing --runtime (or RUNT_DEFAULT_RUNTIME): choose one of ${CLI_RUNTIMES.join(', ')}`,
      );
    const image = flags.image ?? process.env.RUNT_DEFAULT_IMAGE;
    if ((runtime === 'docker' || runtime === 'podman') && !image) {
      throw new CliError(`the ${runtime} runtime needs an image: pass --image (or set RUNT_DEFAULT_IMAGE)`);
    }
    const { manager, close } = openWorkspaces();
    try {
      const ws = await manager.init({
        sources: args.sources,
        runtime,
        ...(flags.name ? { name: flags.name } : {}),
        ...(flags.config ? { configPath: flags.config } : {}),
        ...(image && runtime !== 'process' ? { image } : {}),
      });
      this.log(
        `Workspace ${ws.name} (${ws.id}) is running in ${ws.runtime}. Open a shell: runt workspace terminal ${ws.name}`,
      );
      return workspaceJson(ws);
    } finally {
      await close();
    }
  }
}
