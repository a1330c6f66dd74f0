import { Hono, type Context } from 'hono';
import { bearerAuth, type AuthEnv, type PrincipalResolver } from '@runt/transport-auth';
import {
  appendEventsRequestSchema,
  claimRunRequestSchema,
  heartbeatRunRequestSchema,
  listRunsQuerySchema,
  releaseRunRequestSchema,
  handBackRunRequestSchema,
  reportRunStatusRequestSchema,
} from '@runt/protocol';
import { readJson, readQuery } from '../body.js';
import { HttpError } from '../errors.js';
import { agentOps } from '../runs/agent-ops.js';
import type { RunLifecycle } from '../runs/run-lifecycle.js';
import type { RunStore } from '../runs/run-store.js';

export interface AgentRunRouteDeps {
  lifecycle: RunLifecycle;
  runs: RunStore;
  resolve: PrincipalResolver;
  bodyLimitBytes: number;
}

/** The calling workstation (these routes take workstation tokens only). */
function workstationOf(c: Context<AuthEnv>): string {
  const id = c.get('principal').workstationId;
  if (!id) throw new HttpError('forbidden', 'this credential belongs to no workstation');
  return id;
}

/**
 * Runs, agent side (mounted under `/api`): the polling path, claim, and the fenced
 * heartbeat / events / status / release (answered by `agentOps`, as over the link). Bodies go through `readJson`, which reads the Node
 * stream directly: these are the hot endpoints.
 */
export function agentRunRoutes(deps: AgentRunRouteDeps) {
  const workstation = bearerAuth({ resolve: deps.resolve, kinds: ['workstation'] });
  const either = bearerAuth({ resolve: deps.resolve, kinds: ['admin', 'workstation'] });
  const limit = deps.bodyLimitBytes;
  // The same calls answer over the agent link (`link/link-server.ts`).
  const ops = agentOps(deps.lifecycle);
  return new Hono<AuthEnv>()
    .get('/workstations/:id/runs', either, async (c) => {
      const p = c.get('principal');
      const id = c.req.param('id');
      if (p.kind !== 'admin' && p.workstationId !== id)
        throw new HttpError('forbidden', 'a workstation sees only its own runs');
      const q = readQuery(c, listRunsQuerySchema);
      return c.json(await deps.runs.list({ ...q, workstation_id: id }));
    })
    .post('/runs/:id/claim', workstation, async (c) => {
      const body = await readJson(c, claimRunRequestSchema, limit);
      return c.json(await ops.claim(workstationOf(c), c.req.param('id'), body));
    })
    .post('/runs/:id/heartbeat', workstation, async (c) => {
      const body = await readJson(c, heartbeatRunRequestSchema, limit);
      return c.json(await ops.heartbeat(workstationOf(c), c.req.param('id'), body));
    })
    .post('/runs/:id/events', workstation, async (c) => {
      const body = await readJson(c, appendEventsRequestSchema, limit);
      return c.json(await ops.events(workstationOf(c), c.req.param('id'), body));
    })
    .post('/runs/:id/status', workstation, async (c) => {
      const body = await readJson(c, reportRunStatusRequestSchema, limit);
      return c.json(await ops.status(workstationOf(c), c.req.param('id'), body));
    })
    .post('/runs/:id/release', workstation, async (c) => {
      const body = await readJson(c, releaseRunRequestSchema, limit);
      return c.json(await ops.release(workstationOf(c), c.req.param('id'), body));
    })
    .post('/runs/:id/hand-back', workstation, async (c) => {
      const body = await readJson(c, handBackRunRequestSchema, limit);
      return c.json(await ops['hand-back'](workstationOf(c), c.req.param('id'), body));
    });
}
