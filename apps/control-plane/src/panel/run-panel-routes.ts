import { Hono, type MiddlewareHandler } from 'hono';
import type { RunAppDeps } from '../app.js';
import type { WorkstationStore } from '../stores/workstation-store.js';
import type { PanelEnv } from './panel-security.js';

export type RunPanelDeps = RunAppDeps;

export interface RunPanelRouteDeps {
  runs: RunPanelDeps;
  workstations: WorkstationStore;
  bodyLimitBytes: number;
  session: MiddlewareHandler<PanelEnv>;
  origin: MiddlewareHandler;
}

/** The run pages: list, one run with its live log, submit. */
export function runPanelRoutes(_deps: RunPanelRouteDeps) {
  return new Hono<PanelEnv>();
}
