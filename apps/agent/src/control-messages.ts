import type { AgentMessage, ControlMessage, Run } from '@runt/protocol';

/** What the agent does with each control message. */
export interface ControlMessageHandlers {
  /** The control plane confirmed (or corrected) the workstation id. */
  registered: (workstationId: string) => void;
  /** Resolves whether the offered run was taken. */
  offer: (run: Run) => Promise<boolean>;
  cancel: (runId: string) => void;
  command: (runId: string) => void;
  drain: () => void;
  /** Sends an answer back over the link. */
  reply: (message: AgentMessage) => void;
}

/**
 * Dispatches one validated control message from the link: an offer is answered with a `result`
 * once claimed (or not), a ping at once; cancels, command wake-ups and drains go to their handler.
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
