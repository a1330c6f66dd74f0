import { Hono } from 'hono';
import { bearerAuth, type AuthEnv, type PrincipalResolver } from '@runt/transport-auth';
import { registerWorkstationBodySchema, type Workstation } from '@runt/protocol';
import { readJson } from '../body.js';
import { HttpError } from '../errors.js';
import type { RunSignals } from '../runs/run-signals.js';
import type { CredentialStore } from '../stores/credential-store.js';
import type { WorkstationStore } from '../stores/workstation-store.js';

export interface WorkstationRouteDeps {
  workstations: WorkstationStore;
  credentials: CredentialStore;
  resolve: PrincipalResolver;
  bodyLimitBytes: number;
  /** Called after a credential is revoked (closes its agent link). */
  onRevoke?: (credentialId: string, workstationId: string | null) => void;
  /** Publishes drain/undrain signals in their transaction (absent: the write alone). */
  fleetSignals?: FleetSignals;
}

/** What drain and undrain publish with: the run signals' in-transaction publish. */
export type FleetSignals = Pick<RunSignals, 'publish'>;

/**
 * Drains a workstation (the API's and the panel's one path): in the drain's transaction the
 * `drain` message for its agent and "capacity freed" (its withdrawn offers go elsewhere) are
 * published, so a replica holding its link hears of it exactly when it is committed.
 *
 * @example
 * const drained = await drainWorkstation(deps, 'ws_1');
 */
export async function drainWorkstation(
  deps: { workstations: WorkstationStore; fleetSignals?: FleetSignals | undefined },
  workstationId: string,
): Promise<Workstation | undefined> {
  let afterCommit = () => {};
  const drained = await deps.workstations.drain(workstationId, async (tx) => {
    if (deps.fleetSignals)
      afterCommit = await deps.fleetSignals.publish(tx, [{ workstationId, message: { type: 'drain' } }], {
        capacityFreed: true,
      });
  });
  if (!drained) return undefined;
  afterCommit();
  return drained.workstation;
}

/**
 * Undrains a workstation: clears `draining` and publishes "capacity freed" in the same
 * transaction, so every replica's scheduler considers it again.
 *
 * @example
 * const ws = await undrainWorkstation(deps, 'ws_1');
 */
export async function undrainWorkstation(
  deps: { workstations: WorkstationStore; fleetSignals?: FleetSignals | undefined },
  workstationId: string,
): Promise<Workstation | undefined> {
  let afterCommit = () => {};
  const ws = await deps.workstations.undrain(workstationId, async (tx) => {
    if (deps.fleetSignals) afterCommit = await deps.fleetSignals.publish(tx, [], { capacityFreed: true });
  });
  if (!ws) return undefined;
  afterCommit();
  return ws;
}

/** Registration/heartbeat, the fleet, drain/undrain, and credentials. */
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
      const workstation = await drainWorkstation(deps, c.req.param('id'));
      if (!workstation) throw new HttpError('not-found', 'no such workstation');
      return c.json({ workstation });
    })
    .post('/:id/undrain', admin, async (c) => {
      const workstation = await undrainWorkstation(deps, c.req.param('id'));
      if (!workstation) throw new HttpError('not-found', 'no such workstation');
      return c.json({ workstation });
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
