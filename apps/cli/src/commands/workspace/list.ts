import { Command } from '@oclif/core';
import { openWorkspaces, workspaceJson } from '../../workspaces.js';

export default class WorkspaceList extends Command {
  static override summary = 'List every workspace, in every runtime, with its live state.';
  static override examples = ['<%= config.bin %> workspace list', '<%= config.bin %> workspace list --json'];
  static override enableJsonFlag = true;

  async run() {
    const { manager, close } = openWorkspaces();
    try {
      const workspaces = await manager.list();
      if (!this.jsonEnabled()) {
        if (workspaces.length === 0)
          this.log('No workspaces. Create one: runt workspace init <sources> --runtime process');
        for (const w of workspaces)
          this.log([w.name.padEnd(20), w.runtime.padEnd(8), w.liveState.padEnd(8), w.sourcePath].join('  '));
      }
      return { workspaces: workspaces.map(workspaceJson) };
    } finally {
      await close();
    }
  }
}
