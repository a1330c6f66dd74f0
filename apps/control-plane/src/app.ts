import { Hono } from 'hono';
import type { Logger } from 'pino';
import type { PairingStore } from '@runt/pairing';
import type { Database } from '@runt/sql';
import { handleError, HttpError } from './errors.js';
import { healthRoutes } from './routes/health.js';
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
  app.notFound((c) => {
    throw new HttpError('not-found', `no route for ${c.req.method} ${c.req.path}`);
  });
  app.onError(handleError(deps.logger));
  return app;
}
