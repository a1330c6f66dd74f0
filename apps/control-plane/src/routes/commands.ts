import { Hono } from 'hono';
import { bearerAuth, type AuthEnv, type PrincipalResolver } from '@runt/transport-auth';
import {
  ackCommandRequestSchema,
  commandStatusRequestSchema,
  queueCommandRequestSchema,
  type QueueCommandRequest,
  type RunCommand,
} from '@runt/protocol';
import { z } from 'zod';
import { readJson, readQuery } from '../body.js';
import { HttpError } from '../errors.js';
import { agentOps } from '../runs/agent-ops.js';
import type { RunLifecycle } from '../runs/run-lifecycle.js';
import type { RunSignals } from '../runs/run-signals.js';
import type { CommandStore } from '../runs/command-store.js';
import type { RunStore } from '../runs/run-store.js';

export interface CommandRouteDeps {
  commands: CommandStore;
  runs: RunStore;
  lifecycle: RunLifecycle;
  signals: RunSignals;
  resolve: PrincipalResolver;
  bodyLimitBytes: number;
}

const listCommandsQuerySchema = z.object({
  after_seq: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(500).default(500),
});

/**
 * Commands into live runs (mounted under `/api`): the operator queues, the run's workstation
 * polls (woken by a `command` message over the link), acks and finishes them under its lease.
 */
export function commandRoutes(deps: CommandRouteDeps) {
  const admin = bearerAuth({ resolve: deps.resolve, kinds: ['admin'] });
  const workstation = bearerAuth({ resolve: deps.resolve, kinds: ['workstation'] });
  const either = bearerAuth({ resolve: deps.resolve, kinds: ['admin', 'workstation'] });
  const wsOf = (id: string | undefined) => {
    if (!id) throw new HttpError('forbidden', 'this credential belongs to no workstation');
    return id;
  };
  // Ack and status answer over the agent link too (`link/link-server.ts`).
  const ops = agentOps(deps.lifecycle);
  return new Hono<AuthEnv>()
    .post('/runs/:id/commands', admin, async (c) => {
      const body = await readJson(c, queueCommandRequestSchema, deps.bodyLimitBytes);
      return c.json({ command: await queueCommand(deps, c.req.param('id'), body) }, 201);
    })
    .get('/runs/:id/commands', either, async (c) => {
      const q = readQuery(c, listCommandsQuerySchema);
      const runId = c.req.param('id');
      const p = c.get('principal');
      const s = await deps.runs.state(runId);
      if (!s) throw new HttpError('not-found', 'no such run');
      if (p.kind !== 'admin' && p.workstationId !== s.workstation_id)
        throw new HttpError('forbidden', 'the run belongs to another workstation');
      return c.json({ commands: await deps.commands.list(runId, q.after_seq, q.limit) });
    })
    .post('/commands/:id/ack', workstation, async (c) => {
      const body = await readJson(c, ackCommandRequestSchema, deps.bodyLimitBytes);
      return c.json(
        await ops['command-ack'](wsOf(c.get('principal').workstationId), c.req.param('id'), body),
      );
    })
    .post('/commands/:id/status', workstation, async (c) => {
      const body = await readJson(c, commandStatusRequestSchema, deps.bodyLimitBytes);
      return c.json(
        await ops['command-status'](wsOf(c.get('principal').workstationId), c.req.param('id'), body),
      );
    });
}

/** Queues a command into a run (the API's and the panel's one path) and wakes its workstation. */
export async function queueCommand(
  deps: Pick<CommandRouteDeps, 'commands' | 'signals'>,
  runId: string,
  body: QueueCommandRequest,
): Promise<RunCommand> {
  let afterCommit = () => {};
  // The wake-up is published in the command's own transaction (see RunSignals.publish).
  const out = await deps.commands.queueOnRun(runId, body, async (tx, o) => {
    if (o.workstationId)
      afterCommit = await deps.signals.publish(tx, [
        { workstationId: o.workstationId, message: { type: 'command', run_id: runId } },
      ]);
  });
  if (!out) throw new HttpError('not-found', 'no such run');
  afterCommit();
  return out.command;
}
