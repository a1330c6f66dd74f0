import type { AgentMessage, ClaimRunResponse, ControlMessage, Run } from '@runt/protocol';

/** What the agent does with each control message. */
export interface ControlMessageHandlers {
  /** The control plane confirmed (or corrected) the workstation id. */
  registered: (workstationId: string) => void;
  /** Resolves whether the offered run was taken. */
  offer: (run: Run) => Promise<boolean>;
  /** Resolves whether a run claimed on offer for this agent is taken (false: hand it back). */
  claimed: (claim: ClaimRunResponse) => Promise<boolean>;
  cancel: (runId: string) => void;
  command: (runId: string) => void;
  drain: () => void;
  /** Sends an answer back over the link. */
  reply: (message: AgentMessage) => void;
}

/**
 * Dispatches one validated control message from the link: an offer is answered with a `result`
 * once claimed (or not), a run claimed on offer only when handed back, a ping at once; cancels, command wake-ups and drains go to their handler.
 *
 * @example
 * link.onMessage = (m) => handleControlMessage(m, handlers);
 */
export function handleControlMessage(message: ControlMessage, h: ControlMessageHandlers): void {
  switch (message.type) {
    case 'registered':
      if (message.workstation_id) h.registered(message.workstation_id);
      return;
    case 'offer':
      void h
        .offer(message.run)
        .then((ok) => h.reply({ type: 'result', id: message.id, ok, ...(ok ? {} : { error: 'not taken' }) }));
      return;
    case 'offer-claimed':
      // Taken runs need no answer (the lease is already ours); a run not taken is handed back,
      // fenced by its token, so it goes back to the queue at once.
      for (const claim of message.runs) {
        void h.claimed(claim).then((ok) => {
          if (!ok)
            h.reply({
              type: 'result',
              id: claim.run.id,
              ok: false,
              error: 'not taken',
              fencing_token: claim.fencing_token,
            });
        });
      }
      return;
    case 'cancel':
      h.cancel(message.run_id);
      return;
    case 'command':
      h.command(message.run_id);
      return;
    case 'drain':
      h.drain();
      return;
    case 'ping':
      h.reply({ type: 'result', id: message.id, ok: true });
      return;
  }
}
