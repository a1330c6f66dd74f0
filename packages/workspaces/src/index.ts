export {
  WorkspaceStore,
  workspaceRecordSchema,
  type WorkspaceRecord,
  type WorkspaceState,
} from './workspace-store.js';
export {
  WorkspaceManager,
  WORKSPACE_LABEL,
  KEEPALIVE_COMMAND,
  type InitWorkspaceOptions,
  type WorkspaceView,
} from './workspace-manager.js';
export { WorkspaceError, isWorkspaceError, type WorkspaceErrorCode } from './errors.js';
