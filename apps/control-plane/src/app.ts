import { Hono } from 'hono';
import { requestSpan, tracing } from './trace.js';
import type { Logger } from 'pino';
import type { PairingStore } from '@runt/pairing';
import type { Database } from '@runt/sql';
import { rejectUnsafeUrl } from './body.js';
import { handleError, HttpError } from './errors.js';
import type { ControlPlaneMetrics } from './metrics.js';
import { openApiDocument } from './openapi.js';
import type { EventWaiters } from './event-waiters.js';
import type { RunLifecycle } from './runs/run-lifecycle.js';
import type { RunSignals } from './runs/run-signals.js';
import { agentRunRoutes } from './routes/agent-runs.js';
import { bundleRoutes } from './routes/bundles.js';
import { commandRoutes } from './routes/commands.js';
import { healthRoutes } from './routes/health.js';
import { panelRoutes } from './panel/panel-routes.js';
import { PanelSessionStore } from './panel/session-store.js';
import { runRoutes } from './routes/runs.js';
import type { BundleStore } from './stores/bundle-store.js';
import type { CommandStore } from './runs/command-store.js';
import type { EventStore } from './runs/event-store.js';
import type { RunStore } from './runs/run-store.js';
import { pairingRoutes } from './routes/pairing.js';
import { workstationRoutes, type FleetSignals } from './routes/workstations.js';
import type { CredentialStore } from './stores/credential-store.js';
import type { PrincipalCache } from './stores/principal-cache.js';
import type { WorkstationStore } from './stores/workstation-store.js';
import { PendingReasons } from './runs/pending-reason.js';

export interface AppDeps {
  db: Database;
  logger: Logger;
  pairing: PairingStore;
  workstations: WorkstationStore;
  credentials: CredentialStore;
  /** Resolves bearer tokens for every route. */
  principals: PrincipalCache;
  bodyLimitBytes: number;
  publicUrl: () => string;
  onRevoke?: (credentialId: string, workstationId: string | null) => void;
  /** Publishes drain/undrain signals in their transaction (the run signals). */
  fleetSignals?: FleetSignals;
  /** Prometheus metrics served on `/metrics`. */
  metrics?: ControlPlaneMetrics;
  /** Version reported by `/openapi.json`. */
  version?: string;
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
  const resolve = deps.principals.resolve.bind(deps.principals);
  const app = new Hono();
  if (tracing)
    app.use(async (c, next) => {
      requestSpan(c.req.raw)?.mark('http.received');
      await next();
    });
  if (deps.metrics) app.use(deps.metrics.middleware);
  // Access logs: failures at info, successes at debug (RUNT_LOG_LEVEL=debug), so the hot agent
  // endpoints do not pay for a log line each.
  app.use(async (c, next) => {
    const started = performance.now();
    await next();
    const entry = {
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      ms: Math.round((performance.now() - started) * 10) / 10,
    };
    if (c.res.status >= 400) deps.logger.info(entry, 'request');
    else deps.logger.debug(entry, 'request');
  });
  app.use(rejectUnsafeUrl);
  app.route('/', healthRoutes(deps.db));
  const document = openApiDocument(deps.version ?? '0.0.0');
  app.get('/openapi.json', (c) => c.json(document));
  if (deps.metrics) {
    const registry = deps.metrics.registry;
    app.get('/metrics', async (c) =>
      c.text(await registry.metrics(), 200, { 'content-type': registry.contentType }),
    );
  }
  app.route(
    '/api/workstations/pairing-codes',
    pairingRoutes({
      pairing: deps.pairing,
      workstations: deps.workstations,
      resolve,
      bodyLimitBytes: deps.bodyLimitBytes,
      publicUrl: deps.publicUrl,
    }),
  );
  app.route(
    '/api/workstations',
    workstationRoutes({
      workstations: deps.workstations,
      credentials: deps.credentials,
      resolve,
      bodyLimitBytes: deps.bodyLimitBytes,
      ...(deps.onRevoke ? { onRevoke: deps.onRevoke } : {}),
      ...(deps.fleetSignals ? { fleetSignals: deps.fleetSignals } : {}),
    }),
  );
  if (deps.runs) {
    const r = deps.runs;
    const common = { resolve, bodyLimitBytes: deps.bodyLimitBytes };
    const pending = new PendingReasons(deps.db, deps.workstations);
    app.route('/api/runs', runRoutes({ ...common, ...r, workstations: deps.workstations, pending }));
    app.route('/api', agentRunRoutes({ ...common, lifecycle: r.lifecycle, runs: r.runs }));
    app.route(
      '/api',
      commandRoutes({
        ...common,
        commands: r.commands,
        runs: r.runs,
        lifecycle: r.lifecycle,
        signals: r.signals,
      }),
    );
    app.route(
      '/api/bundles',
      bundleRoutes({ resolve, bundles: r.bundles, bundleLimitBytes: r.bundleLimitBytes }),
    );
  }
  app.route(
    '/',
    panelRoutes({
      ...deps,
      sessions: new PanelSessionStore(deps.db),
      ...(deps.runs ? { runs: deps.runs } : {}),
    }),
  );
  // The agent link is a WebSocket upgrade handled on the Node server; a plain GET lands here.
  app.get('/api/agent/link', () => {
    throw new HttpError(
      'upgrade-required',
      'the agent link is a WebSocket: send Upgrade: websocket with a workstation token',
    );
  });
  app.notFound((c) => {
    throw new HttpError('not-found', `no route for ${c.req.method} ${c.req.path}`);
  });
  app.onError(handleError(deps.logger));
  return app;
}
