import { createHash } from 'node:crypto';
import { Hono } from 'hono';
import { bearerAuth, type AuthEnv, type PrincipalResolver } from '@runt/transport-auth';
import { sha256Schema } from '@runt/protocol';
import { readBytes } from '../body.js';
import { HttpError } from '../errors.js';
import type { BundleStore } from '../stores/bundle-store.js';

export interface BundleRouteDeps {
  bundles: BundleStore;
  resolve: PrincipalResolver;
  bundleLimitBytes: number;
}

function digestParam(raw: string): string {
  const parsed = sha256Schema.safeParse(raw);
  if (!parsed.success) throw new HttpError('invalid-request', 'sha256: a lowercase hex sha256');
  return parsed.data;
}

/**
 * Content-addressed bundles: the operator uploads raw bytes to `PUT /api/bundles/:sha256`
 * (refused with 400 `bundle-digest-mismatch` when the bytes hash to something else; uploading
 * again is a no-op), and the workstation running a run that names the bundle downloads it.
 */
export function bundleRoutes(deps: BundleRouteDeps) {
  const admin = bearerAuth({ resolve: deps.resolve, kinds: ['admin'] });
  const either = bearerAuth({ resolve: deps.resolve, kinds: ['admin', 'workstation'] });
  return new Hono<AuthEnv>()
    .put('/:sha256', admin, async (c) => {
      const sha256 = digestParam(c.req.param('sha256'));
      const existing = await deps.bundles.info(sha256);
      const bytes = await readBytes(c, deps.bundleLimitBytes);
      const actual = createHash('sha256').update(bytes).digest('hex');
      if (actual !== sha256)
        throw new HttpError('bundle-digest-mismatch', `the body hashes to ${actual}, not ${sha256}`, {
          sha256: actual,
        });
      const bundle = existing ?? (await deps.bundles.put(sha256, bytes));
      return c.json({ bundle }, existing ? 200 : 201);
    })
    .get('/:sha256', either, async (c) => {
      const sha256 = digestParam(c.req.param('sha256'));
      const p = c.get('principal');
      if (
        p.kind !== 'admin' &&
        !(p.workstationId && (await deps.bundles.usedByWorkstation(sha256, p.workstationId)))
      ) {
        throw new HttpError('forbidden', 'no active run of this workstation uses that bundle');
      }
      const bytes = await deps.bundles.get(sha256);
      if (!bytes) throw new HttpError('not-found', 'no such bundle');
      return c.body(new Uint8Array(bytes), 200, {
        'Content-Type': 'application/octet-stream',
        'Content-Length': String(bytes.byteLength),
        ETag: `"${sha256}"`,
        'Cache-Control': 'private, max-age=31536000, immutable',
      });
    });
}
