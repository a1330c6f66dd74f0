import type { Context, MiddlewareHandler } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { PanelSession, PanelSessionStore } from './session-store.js';
import { SESSION_TTL_MS } from './session-store.js';

/** Hono env of panel routes behind {@link requireSession}. */
export type PanelEnv = { Variables: { session: PanelSession; sessionToken: string } };

export const SESSION_COOKIE = 'runt_session';

/**
 * Script, style and connections only from this origin, no framing, no plugins, forms post only
 * here: no 'unsafe-inline' anywhere, so an injected `<script>` or `onclick` does not run.
 */
export const PANEL_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** Headers every panel answer carries (pages hold fleet data: never cached, never framed). */
export const securityHeaders: MiddlewareHandler = async (c, next) => {
  await next();
  c.header('Content-Security-Policy', PANEL_CSP);
  c.header('X-Frame-Options', 'DENY');
  c.header('X-Content-Type-Options', 'nosniff');
  c.header('Referrer-Policy', 'same-origin');
  c.header('Cross-Origin-Opener-Policy', 'same-origin');
  if (!c.res.headers.has('Cache-Control')) c.header('Cache-Control', 'no-store');
};

/**
 * State-changing requests must come from a page of this panel: `Origin` equal to the public
 * URL's origin or to the origin the request was sent to (a browser always sends `Origin` on a
 * POST; a cross-site form or fetch carries the other site's). Anything else is refused with 403
 * before the session is even looked at.
 */
export function sameOrigin(publicUrl: () => string): MiddlewareHandler {
  return async (c, next) => {
    if (c.req.method === 'GET' || c.req.method === 'HEAD') return next();
    const origin = c.req.header('origin');
    const allowed = new Set([originOf(publicUrl()), originOf(c.req.url)]);
    if (!origin || origin === 'null' || !allowed.has(origin)) {
      return c.text('Forbidden: this form was not sent from the runt panel (Origin check).', 403);
    }
    return next();
  };
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '';
  }
}

/**
 * Needs a live session cookie. Without one a page request goes to the sign-in page (and back
 * here after signing in); live fragments, JSON and event streams answer 401.
 */
export function requireSession(sessions: PanelSessionStore): MiddlewareHandler<PanelEnv> {
  return async (c, next) => {
    const token = getCookie(c, SESSION_COOKIE);
    const session = await sessions.resolve(token);
    if (!session || !token) {
      const wantsPage =
        c.req.method === 'GET' &&
        (c.req.header('accept') ?? '').includes('text/html') &&
        c.req.query('fragment') === undefined;
      if (wantsPage) return c.redirect(`/sign-in?next=${encodeURIComponent(c.req.path)}`, 303);
      if (c.req.method !== 'GET') return c.redirect('/sign-in', 303);
      return c.text('Sign in first.', 401);
    }
    c.set('session', session);
    c.set('sessionToken', token);
    return next();
  };
}

/** Sets the session cookie: HttpOnly, SameSite=Strict, Path=/, Secure when the panel is served over https. */
export function setSessionCookie(c: Context, token: string, publicUrl: string): void {
  setCookie(c, SESSION_COOKIE, token, {
    httpOnly: true,
    sameSite: 'Strict',
    secure: publicUrl.startsWith('https:'),
    path: '/',
    maxAge: Math.floor(SESSION_TTL_MS / 1000),
  });
}

export function clearSessionCookie(c: Context, publicUrl: string): void {
  deleteCookie(c, SESSION_COOKIE, {
    path: '/',
    secure: publicUrl.startsWith('https:'),
    httpOnly: true,
    sameSite: 'Strict',
  });
}

/** A `next=` target that stays inside the panel (no `//evil`, no scheme). */
export function safeNext(next: string | undefined): string {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\'))
    return '/workstations';
  return next;
}
