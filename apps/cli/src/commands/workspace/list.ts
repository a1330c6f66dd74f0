import { Command } from '@oclif/core';
import { relativeTime } from '../../relative-time.js';
import { tableLines } from '../../table.js';
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
        else {
          const head = ['NAME', 'RUNTIME', 'STATE', 'SOURCES', 'CREATED'];
          const rows = workspaces.map((w) => [
            w.name,
            w.runtime,
            w.liveState,
            w.sourcePath,
            relativeTime(w.createdAt),
          ]);
          for (const l of tableLines(head, rows, { statusColumn: 2 })) this.log(l);
        }
      }
      return { workspaces: workspaces.map(workspaceJson) };
    } finally {
      await close();
    }
  }
}
