import { Hono } from 'hono';
import type { Logger } from 'pino';
import type { PairingStore } from '@runt/pairing';
import type { Database } from '@runt/sql';
import { handleError, HttpError } from './errors.js';
import type { EventWaiters } from './event-waiters.js';
import type { RunLifecycle } from './run-lifecycle.js';
import type { RunSignals } from './run-signals.js';
import { agentRunRoutes } from './routes/agent-runs.js';
import { bundleRoutes } from './routes/bundles.js';
import { commandRoutes } from './routes/commands.js';
import { healthRoutes } from './routes/health.js';
import { runRoutes } from './routes/runs.js';
import type { BundleStore } from './stores/bundle-store.js';
import type { CommandStore } from './stores/command-store.js';
import type { EventStore } from './stores/event-store.js';
import type { RunStore } from './stores/run-store.js';
import { pairingRoutes } from './routes/pairing.js';
import { workstationRoutes } from './routes/workstations.js';
import type { WorkstationStore } from './stores/workstation-store.js';

export interface AppDeps {
  db: Database;
  logger: Logger;
  pairing: PairingStore;
  workstations: WorkstationStore;
  bodyLimitBytes: number;
  publicUrl: () => string;
  onRevoke?: (credentialId: string, workstationId: string | null) => void;
  /** Runs, events, commands and bundles; without it only pairing and workstations are served. */
  runs?: RunAppDeps;
}

/** What the run endpoints need (`startControlPlane` builds it). */
export interface RunAppDeps {
  runs: RunStore;
  events: EventStore;
  commands: CommandStore;
  bundles: BundleStore;
  lifecycle: RunLifecycle;
  signals: RunSignals;
  waiters: EventWaiters;
  bundleLimitBytes: number;
  eventPollMs: number;
  /** Aborted when the server shuts down: live event streams end. */
  shutdown?: AbortSignal;
}

/**
 * The control plane's HTTP app: one sub-app per resource, one error handler, request logs.
 * It holds no listening socket; `startControlPlane` serves it.
 */
export function createApp(deps: AppDeps) {
  const resolve = deps.workstations.resolve.bind(deps.workstations);
  const app = new Hono();
  app.use(async (c, next) => {
    const started = performance.now();
    await next();
    deps.logger.info(
      { method: c.req.method, path: c.req.path, status: c.res.status, ms: Math.round((performance.now() - started) * 10) / 10 },
      'request',
    );
  });
  app.route('/', healthRoutes(deps.db));
  app.route(
    '/api/workstations/pairing-codes',
    pairingRoutes({ pairing: deps.pairing, workstations: deps.workstations, resolve, bodyLimitBytes: deps.bodyLimitBytes, publicUrl: deps.publicUrl }),
  );
  app.route(
    '/api/workstations',
    workstationRoutes({
      workstations: deps.workstations,
      resolve,
      bodyLimitBytes: deps.bodyLimitBytes,
      ...(deps.onRevoke ? { onRevoke: deps.onRevoke } : {}),
    }),
  );
  if (deps.runs) {
    const r = deps.runs;
    const common = { resolve, bodyLimitBytes: deps.bodyLimitBytes };
    app.route('/api/runs', runRoutes({ ...common, ...r, workstations: deps.workstations }));
    app.route('/api', agentRunRoutes({ ...common, lifecycle: r.lifecycle, runs: r.runs }));
    app.route('/api', commandRoutes({ ...common, commands: r.commands, runs: r.runs, lifecycle: r.lifecycle, signals: r.signals }));
    app.route('/api/bundles', bundleRoutes({ resolve, bundles: r.bundles, bundleLimitBytes: r.bundleLimitBytes }));
  }
  // The agent link is a WebSocket upgrade handled on the Node server; a plain GET lands here.
  app.get('/api/agent/link', () => {
    throw new HttpError('upgrade-required', 'the agent link is a WebSocket: send Upgrade: websocket with a workstation token');
  });
  app.notFound((c) => {
    throw new HttpError('not-found', `no route for ${c.req.method} ${c.req.path}`);
  });
  app.onError(handleError(deps.logger));
  return app;
}
