import { Args, Command, Flags } from '@oclif/core';
import { openWorkspaces, workspaceJson } from '../../workspaces.js';

export default class WorkspaceRemove extends Command {
  static override summary = 'Stop a workspace, remove its instance, and forget it.';
  static override examples = [
    '<%= config.bin %> workspace remove my-repo',
    '<%= config.bin %> workspace remove my-repo --force',
  ];
  static override enableJsonFlag = true;
  static override args = { workspace: Args.string({ required: true, description: 'workspace name or id' }) };
  static override flags = {
    force: Flags.boolean({
      description: 'forget the workspace even when its runtime cannot stop or remove the instance',
    }),
  };

  async run() {
    const { args, flags } = await this.parse(WorkspaceRemove);
    const { manager, close } = openWorkspaces();
    try {
      const ws = await manager.remove(args.workspace, { force: flags.force });
      this.log(`Removed workspace ${ws.name}.`);
      return { removed: workspaceJson(ws) };
    } finally {
      await close();
    }
  }
}
