import { Hono } from 'hono';
import { bearerAuth, type AuthEnv, type PrincipalResolver } from '@runt/transport-auth';
import { registerWorkstationBodySchema } from '@runt/protocol';
import { readJson } from '../body.js';
import { HttpError } from '../errors.js';
import type { CredentialStore } from '../stores/credential-store.js';
import type { WorkstationStore } from '../stores/workstation-store.js';

export interface WorkstationRouteDeps {
  workstations: WorkstationStore;
  credentials: CredentialStore;
  resolve: PrincipalResolver;
  bodyLimitBytes: number;
  /** Called after a credential is revoked (closes its agent link). */
  onRevoke?: (credentialId: string, workstationId: string | null) => void;
  /** Called after a workstation was set draining (sends `drain` over its link, schedules the withdrawn offers). */
  onDrain?: (workstationId: string) => void;
}

/** Registration/heartbeat, the fleet, drain, and credentials. */
export function workstationRoutes(deps: WorkstationRouteDeps) {
  const admin = bearerAuth({ resolve: deps.resolve, kinds: ['admin'] });
  const workstation = bearerAuth({ resolve: deps.resolve, kinds: ['workstation'] });
  const anyone = bearerAuth({ resolve: deps.resolve, kinds: ['admin', 'workstation'] });
  return new Hono<AuthEnv>()
    .post('/', workstation, async (c) => {
      const body = await readJson(c, registerWorkstationBodySchema, deps.bodyLimitBytes);
      const id = c.get('principal').workstationId;
      if (!id) throw new HttpError('forbidden', 'this credential belongs to no workstation');
      return c.json({ workstation: await deps.workstations.register(id, body) });
    })
    .get('/', anyone, async (c) => c.json({ workstations: await deps.workstations.list() }))
    .get('/credentials', admin, async (c) => c.json({ credentials: await deps.credentials.list() }))
    .post('/:id/drain', admin, async (c) => {
      const drained = await deps.workstations.drain(c.req.param('id'));
      if (!drained) throw new HttpError('not-found', 'no such workstation');
      deps.onDrain?.(drained.workstation.id);
      return c.json({ workstation: drained.workstation });
    })
    .post('/self/revoke', workstation, async (c) => {
      // `runt workstation disconnect --revoke`: a workstation may end its own credential.
      const cred = await deps.credentials.revoke(c.get('principal').id);
      if (!cred) throw new HttpError('not-found', 'no such credential');
      deps.onRevoke?.(cred.id, cred.workstation_id);
      return c.json({ credential: cred });
    })
    .post('/credentials/:id/revoke', admin, async (c) => {
      const cred = await deps.credentials.revoke(c.req.param('id'));
      if (!cred) throw new HttpError('not-found', 'no such credential');
      deps.onRevoke?.(cred.id, cred.workstation_id);
      return c.json({ credential: cred });
    });
}
