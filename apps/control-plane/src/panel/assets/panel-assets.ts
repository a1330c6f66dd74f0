import { createHash } from 'node:crypto';
import { Hono } from 'hono';
import { PANEL_SCRIPT } from './panel-script.js';
import { PANEL_STYLE } from './panel-style.js';

interface Asset {
  path: string;
  body: string;
  type: string;
}

function asset(name: string, ext: string, body: string, type: string): Asset {
  const digest = createHash('sha256').update(body).digest('hex').slice(0, 12);
  return { path: `/assets/${name}.${digest}.${ext}`, body, type };
}

/** The panel's script and stylesheet, named by their content hash (so they can be cached forever). */
export const PANEL_ASSETS = {
  script: asset('panel', 'js', PANEL_SCRIPT, 'text/javascript; charset=utf-8'),
  style: asset('panel', 'css', PANEL_STYLE, 'text/css; charset=utf-8'),
} as const;

/**
 * Serves the assets with `Cache-Control: public, max-age=31536000, immutable` (a new build
 * has a new name) and an ETag; no session needed (they hold nothing secret).
 */
export function assetRoutes() {
  const app = new Hono();
  for (const a of Object.values(PANEL_ASSETS)) {
    const etag = `"${a.path.split('.')[1]}"`;
    app.get(a.path, (c) => {
      c.header('Cache-Control', 'public, max-age=31536000, immutable');
      c.header('ETag', etag);
      c.header('X-Content-Type-Options', 'nosniff');
      if (c.req.header('if-none-match') === etag) return c.body(null, 304);
      return c.body(a.body, 200, { 'content-type': a.type });
    });
  }
  return app;
}
