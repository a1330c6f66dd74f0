import { Hono } from 'hono';
import type { Database } from '@runt/sql';

/** `/healthz` (the process answers) and `/readyz` (the database answers too). */
export function healthRoutes(db: Database) {
  return new Hono()
    .get('/healthz', (c) => c.json({ ok: true }))
    .get('/readyz', async (c) => {
      try {
        await db.query('select 1');
        return c.json({ ok: true, database: db.backend });
      } catch {
        return c.json({ error: { code: 'unavailable', message: 'database not reachable' } }, 503);
      }
    });
}
