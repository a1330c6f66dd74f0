import { Args, Command } from '@oclif/core';
import { openWorkspaces, workspaceJson } from '../../workspaces.js';

export default class WorkspaceStop extends Command {
  static override summary = 'Stop a workspace.';
  static override examples = ['<%= config.bin %> workspace stop my-repo'];
  static override enableJsonFlag = true;
  static override args = { workspace: Args.string({ required: true, description: 'workspace name or id' }) };

  async run() {
    const { args } = await this.parse(WorkspaceStop);
    const { manager, close } = openWorkspaces();
    try {
      const ws = await manager.stop(args.workspace);
      this.log(`Workspace ${ws.name} is ${ws.state}.`);
      return workspaceJson(ws);
    } finally {
      await close();
    }
  }
}
