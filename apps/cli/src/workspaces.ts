import { dirname } from 'node:path';
import { credentialPath } from '@runt/pairing';
import { WorkspaceManager, WorkspaceStore, type WorkspaceRecord } from '@runt/workspaces';
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

/**
 * A workspace as `--json` prints it: the CLI's one key style, snake_case (`source_path`,
 * `live_state`, `runtime_info.started_at`), though @runt/workspaces stores it camelCase. Every key
 * is converted, the runtime's facts included: a workspace holds no map whose keys a user chose.
 *
 * @example
 * return { workspaces: (await manager.list()).map(workspaceJson) };
 */
export function workspaceJson(w: WorkspaceRecord): Record<string, unknown> {
  return snakeKeys(w) as Record<string, unknown>;
}

function snakeKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(snakeKeys);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [
      k.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase(),
      snakeKeys(v),
    ]),
  );
}
