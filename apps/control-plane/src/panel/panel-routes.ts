import { Hono, type Context } from 'hono';
import { html } from 'hono/html';
import { getCookie } from 'hono/cookie';
import type { Logger } from 'pino';
import type { PairingStore } from '@runt/pairing';
import type { Database } from '@runt/sql';
import { hashToken, parseToken, redactSecrets } from '@runt/transport-auth';
import { HttpError, toHttpError } from '../errors.js';
import { connectCommand } from '@runt/protocol';
import { clientAddressOf, pairingCodeStatus } from '../routes/pairing.js';
import { drainWorkstation, undrainWorkstation, type FleetSignals } from '../routes/workstations.js';
import type { CredentialStore } from '../stores/credential-store.js';
import type { PrincipalCache } from '../stores/principal-cache.js';
import type { WorkstationStore } from '../stores/workstation-store.js';
import { assetRoutes } from './assets/panel-assets.js';
import type { Html } from './layout.js';
import { page, readForm } from './panel-page.js';
import { addWorkstationPage, pairingCodePage } from './pages/add-workstation-page.js';
import { signInPage } from './pages/sign-in-page.js';
import { revokeConfirmPage, workstationsPage, workstationsTable } from './pages/workstations-page.js';
import {
  clearSessionCookie,
  requireSession,
  safeNext,
  sameOrigin,
  securityHeaders,
  setSessionCookie,
  SESSION_COOKIE,
  type PanelEnv,
} from './panel-security.js';
import { fleetWithRunsInUse, liveCredentialsOf } from './panel-reads.js';
import type { PanelSessionStore } from './session-store.js';
import { runPanelRoutes, type RunPanelDeps } from './run-panel-routes.js';

export interface PanelDeps {
  db: Database;
  logger: Logger;
  pairing: PairingStore;
  workstations: WorkstationStore;
  credentials: CredentialStore;
  principals: PrincipalCache;
  sessions: PanelSessionStore;
  publicUrl: () => string;
  bodyLimitBytes: number;
  onRevoke?: (credentialId: string, workstationId: string | null) => void;
  /** Publishes drain/undrain signals in their transaction (the run signals). */
  fleetSignals?: FleetSignals;
  /** The run pages; without it only sign-in and the fleet are served. */
  runs?: RunPanelDeps;
}

/**
 * The web panel, served at `/` beside `/api`: sign-in with the admin token once (then a
 * session cookie), the fleet, pairing, and (with `runs`) the run pages. Every route carries
 * the panel's security headers; state-changing ones check `Origin` and the session.
 */
export function panelRoutes(deps: PanelDeps) {
  const session = requireSession(deps.sessions);
  const origin = sameOrigin(deps.publicUrl);
  const app = new Hono<PanelEnv>();
  app.route('/', assetRoutes());

  app.get('/', securityHeaders, session, (c) => c.redirect('/workstations', 303));

  app.get('/sign-in', securityHeaders, async (c) => {
    if (await deps.sessions.resolve(getCookie(c, SESSION_COOKIE)))
      return c.redirect(safeNext(c.req.query('next')), 303);
    return page(c, 'Sign in', signInPage({ next: safeNext(c.req.query('next')) }), { signedIn: false });
  });

  app.post('/sign-in', securityHeaders, origin, async (c) => {
    const form = await readForm(c, deps.bodyLimitBytes);
    const next = safeNext(form.next);
    const token = (form.token ?? '').trim();
    let principal;
    try {
      principal = await deps.pairing.limitGuesses(clientAddressOf(c), async () =>
        parseToken(token)?.kind === 'admin' ? deps.principals.resolve(hashToken(token), 'admin') : undefined,
      );
    } catch (e) {
      const known = toHttpError(e);
      if (known?.code !== 'rate-limited') throw e;
      for (const [k, v] of Object.entries(known.headers)) c.header(k, v);
      const wait = known.headers['Retry-After'] ?? '60';
      return page(
        c,
        'Sign in',
        signInPage({ next, error: `Too many wrong tokens from here. Try again in ${wait} s.` }),
        { signedIn: false, status: 429 },
      );
    }
    if (!principal) {
      return page(
        c,
        'Sign in',
        signInPage({
          next,
          error: 'That is not a valid admin token (it may have been revoked or regenerated).',
        }),
        {
          signedIn: false,
          status: 401,
        },
      );
    }
    setSessionCookie(c, await deps.sessions.open(principal.id), deps.publicUrl());
    deps.logger.info({ credential: principal.id }, 'panel sign-in');
    return c.redirect(next, 303);
  });

  app.post('/sign-out', securityHeaders, origin, async (c) => {
    await deps.sessions.close(getCookie(c, SESSION_COOKIE));
    clearSessionCookie(c, deps.publicUrl());
    return c.redirect('/sign-in', 303);
  });

  // ---- the fleet ----
  const fleet = async () => workstationsTable(await fleetWithRunsInUse(deps.db));

  app.get('/workstations', securityHeaders, session, async (c) => {
    if (c.req.query('fragment') !== undefined) return c.html(await fleet());
    const done = c.req.query('done');
    const message =
      done === 'drained'
        ? 'Draining: it finishes what it runs and takes nothing new.'
        : done === 'undrained'
          ? 'Undrained: it is offered runs again while its agent listens.'
          : done === 'revoked'
            ? 'Revoked.'
            : undefined;
    return page(c, 'Workstations', workstationsPage(await fleet(), message), { current: '/workstations' });
  });

  app.post('/workstations/:id/drain', securityHeaders, origin, session, async (c) => {
    if (!(await drainWorkstation(deps, c.req.param('id'))))
      throw new HttpError('not-found', 'no such workstation');
    return c.redirect('/workstations?done=drained', 303);
  });

  app.post('/workstations/:id/undrain', securityHeaders, origin, session, async (c) => {
    if (!(await undrainWorkstation(deps, c.req.param('id'))))
      throw new HttpError('not-found', 'no such workstation');
    return c.redirect('/workstations?done=undrained', 303);
  });

  app.get('/workstations/:id/revoke', securityHeaders, session, async (c) => {
    const w = await deps.workstations.get(c.req.param('id'));
    if (!w) throw new HttpError('not-found', 'no such workstation');
    return page(c, `Revoke ${w.display_name}`, revokeConfirmPage(w), { current: '/workstations' });
  });

  app.post('/workstations/:id/revoke', securityHeaders, origin, session, async (c) => {
    const id = c.req.param('id');
    if (!(await deps.workstations.get(id))) throw new HttpError('not-found', 'no such workstation');
    for (const credentialId of await liveCredentialsOf(deps.db, id)) {
      const cred = await deps.credentials.revoke(credentialId);
      if (cred) deps.onRevoke?.(cred.id, cred.workstation_id);
    }
    return c.redirect('/workstations?done=revoked', 303);
  });

  // ---- pairing ----
  app.get('/workstations/new', securityHeaders, session, (c) =>
    page(c, 'Add a workstation', addWorkstationPage(), { current: '/workstations/new' }),
  );

  app.post('/workstations/new', securityHeaders, origin, session, async (c) => {
    const minted = await deps.pairing.mint({ createdBy: c.get('session').credentialId });
    const body = pairingCodePage({
      id: minted.id,
      command: connectCommand(deps.publicUrl(), minted.code),
      expiresAt: minted.expiresAt.toISOString(),
    });
    return page(c, 'Add a workstation', body, { current: '/workstations/new' });
  });

  app.get('/workstations/pairing/:id', securityHeaders, session, async (c) => {
    const p = await pairingCodeStatus(deps, c.req.param('id'));
    if (!p) throw new HttpError('not-found', 'no such pairing code');
    const w = p.workstation_id ? await deps.workstations.get(p.workstation_id) : undefined;
    const online = p.status === 'registered' && w?.status === 'online';
    const label = online
      ? 'registered · online'
      : {
          pending: 'waiting for the workstation',
          redeemed: 'redeemed · registering',
          registered: 'registered',
          expired: 'expired',
        }[p.status];
    return c.json({
      status: p.status,
      label,
      online,
      workstation_id: p.workstation_id,
      display_name: w?.display_name ?? null,
      workstation_url: w ? `/workstations#ws-${w.id}` : null,
    });
  });

  if (deps.runs) app.route('/', runPanelRoutes({ ...deps, runs: deps.runs, session, origin }));

  app.onError(panelError(deps.logger));
  return app;
}

/** Errors on panel routes answer a small HTML page (the API's stay JSON). */
function panelError(logger: Logger) {
  return (e: unknown, c: Context) => {
    const known = toHttpError(e);
    const status = known ? known.status : 500;
    if (!known)
      logger.error(
        {
          err: redactSecrets({ message: (e as Error)?.message, stack: (e as Error)?.stack }),
          path: c.req.path,
        },
        'unhandled panel error',
      );
    const message = known ? known.message : 'Something went wrong on the server; it was logged.';
    c.header('Content-Security-Policy', "default-src 'none'; style-src 'self'; frame-ancestors 'none'");
    c.header('X-Frame-Options', 'DENY');
    c.header('Cache-Control', 'no-store');
    return page(c, status === 404 ? 'Not found' : 'Error', errorBody(status, message), {
      status,
      signedIn: false,
    });
  };
}

function errorBody(status: number, message: string): Html {
  return html`<h1>${status === 404 ? 'Not found' : status >= 500 ? 'Server error' : 'Refused'}</h1><p class="error">${message}</p><p><a href="/workstations">Back to the workstations</a></p>`;
}
