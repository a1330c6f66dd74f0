import type { z } from 'zod';
import type { LINK_OP_REQUEST_SCHEMAS, LinkOp } from '@runt/protocol';
import type { RunLifecycle } from './run-lifecycle.js';
import type { HandBackOutcome } from './transitions.js';

type Body<K extends LinkOp> = z.infer<(typeof LINK_OP_REQUEST_SCHEMAS)[K]>;

/** One fenced agent call: the calling workstation, the run (or command) id, the validated body → the answer body. */
export type AgentOps = {
  [K in LinkOp]: (workstationId: string, target: string, body: Body<K>) => Promise<unknown>;
};

/** A hand-back's answer: whether it applied and, if so, the run's status after it (queued, or cancelled). */
const handBackAnswer = (back: HandBackOutcome) =>
  back === undefined ? { handed_back: false } : { handed_back: true, status: back };

/**
 * The agent's fenced calls (claim, renew, events, status, release, hand-back, command ack/status) as both
 * transports answer them: the HTTP routes (`routes/agent-runs.ts`, `routes/commands.ts`) and
 * the link (`link/link-server.ts`) call these, so an answer and a refusal (`RunError` → the
 * same `{code,message,details}` and status through `errors.ts`) cannot differ by transport.
 *
 * @example
 * const ops = agentOps(lifecycle);
 * const answer = await ops.heartbeat('ws_1', 'run_1', { fencing_token: 3, lease_ms: 30_000 });
 */
export function agentOps(lifecycle: RunLifecycle): AgentOps {
  return {
    claim: (ws, runId, b) => lifecycle.claim(ws, runId, b.runner_id, b.lease_ms),
    heartbeat: (ws, runId, b) => lifecycle.heartbeat(ws, runId, b.fencing_token, b.lease_ms),
    events: async (ws, runId, b) => ({
      next_event_seq: await lifecycle.appendEvents(ws, runId, b.fencing_token, b.events),
    }),
    status: async (ws, runId, b) => {
      const out = await lifecycle.reportStatus(ws, runId, b);
      // `answer: 'brief'` (the agent): the status and the next seq; otherwise the whole run.
      return out.run && b.answer !== 'brief'
        ? { run: out.run, next_event_seq: out.nextEventSeq }
        : { status: out.status, next_event_seq: out.nextEventSeq };
    },
    release: async (ws, runId, b) => {
      await lifecycle.release(ws, runId, b.fencing_token);
      return { ok: true as const };
    },
    'hand-back': async (ws, runId, b) => handBackAnswer(await lifecycle.handBack(ws, runId, b.fencing_token)),
    'command-ack': async (ws, commandId, b) => ({
      command: await lifecycle.ackCommand(ws, commandId, b.fencing_token),
    }),
    'command-status': async (ws, commandId, b) => ({
      command: await lifecycle.commandStatus(ws, commandId, b.fencing_token, b.state, b.exit_code, b.message),
    }),
  };
}
