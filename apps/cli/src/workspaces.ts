import { dirname } from 'node:path';
import { credentialPath } from '@runt/pairing';
import { WorkspaceManager, WorkspaceStore } from '@runt/workspaces';
import { createCliRuntimeRegistry } from './runtimes.js';

/** The CLI's config dir: `RUNT_CONFIG_DIR` or the platform config dir (where workstation.json lives). */
export function cliConfigDir(): string {
  return dirname(credentialPath());
}

/** A workspace manager over the CLI's config dir and runtimes; `close()` when done. */
export function openWorkspaces(): { manager: WorkspaceManager; close: () => Promise<void> } {
  const configDir = cliConfigDir();
  const registry = createCliRuntimeRegistry(configDir);
  const manager = new WorkspaceManager({ store: new WorkspaceStore({ configDir }), registry });
  return { manager, close: () => registry.close() };
}
