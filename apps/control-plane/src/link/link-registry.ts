import type { WebSocket } from 'ws';
import { corkForIteration, type Corkable, type ControlMessage } from '@runt/protocol';
import { runPathMetrics } from '../metrics.js';
import { traceMark, tracing } from '../trace.js';

/** One agent link: kept small, there may be tens of thousands per process. */
export interface AgentLink {
  socket: WebSocket;
  /** The TCP socket under `socket`: corked per loop iteration so its frames leave in one write. */
  raw?: Corkable | undefined;
  workstationId: string;
  credentialId: string;
  /** Heard from (message or pong) since the last ping round. */
  alive: boolean;
  registered: boolean;
  /** Offers a scheduling pass made before the link registered, sent once it has (`flushHeld`). */
  held?: ControlMessage[] | undefined;
  /**
   * Set when the agent's `register` asked for claim on offer: the lease holder (its runner) and
   * lease length the scheduler claims with for it (issue 9).
   */
  claimer?: { holder: string; leaseMs: number } | undefined;
  /** Messages of one link are handled in order. */
  chain: Promise<void>;
}

/** A message held back for a workstation (see `LinkRegistry.holdCancels`). */
interface LinkMessageHeld {
  workstationId: string;
  message: ControlMessage;
}

/**
 * Sends one text frame on `link`. Frames sent to a link in the same iteration of the event loop
 * (the answers of the group-committed batches that came back together, an offer pass) leave in
 * ONE `writev` (`corkForIteration`, `@runt/protocol`, beside `corkForTurn`) instead of a syscall each: at load, `writev` was the control
 * plane's largest self-time entry (issue 9).
 *
 * @example
 * sendText(link, JSON.stringify({ type: 'drain' }));
 */
export function sendText(link: AgentLink, text: string): void {
  if (link.raw) corkForIteration(link.raw);
  link.socket.send(text);
}

/**
 * The links this process holds, one per workstation. Sending is fire-and-forget: the HTTP
 * lease API is the source of truth, so a message lost with a dying link costs latency only.
 *
 * @example
 * const links = new LinkRegistry();
 * links.send('ws_1', { type: 'drain' });
 */
export class LinkRegistry {
  private readonly byWorkstation = new Map<string, AgentLink>();
  /**
   * Runs a scheduling pass may have claimed on offer and not sent yet (its WAL flush comes
   * first), with the cancels that arrived for them meanwhile (`holdCancels`).
   */
  private readonly unsentClaims = new Map<string, { holds: number; held: LinkMessageHeld[] }>();

  /** Adds a link and returns the one it replaces (same workstation), if any. */
  add(link: AgentLink): AgentLink | undefined {
    const old = this.byWorkstation.get(link.workstationId);
    this.byWorkstation.set(link.workstationId, link);
    return old === link ? undefined : old;
  }

  /** Removes a link; true when it was the workstation's current one (not already replaced). */
  remove(link: AgentLink): boolean {
    if (this.byWorkstation.get(link.workstationId) !== link) return false;
    this.byWorkstation.delete(link.workstationId);
    return true;
  }

  /** The current link of a workstation. */
  get(workstationId: string): AgentLink | undefined {
    return this.byWorkstation.get(workstationId);
  }

  /** True when `link` is still its workstation's current link. */
  isCurrent(link: AgentLink): boolean {
    return this.byWorkstation.get(link.workstationId) === link;
  }

  /**
   * Sends a message to a workstation's agent if this process holds its link; false otherwise.
   * Offers sent are counted (`runt_cp_offer_messages_total`).
   *
   * @example
   * links.send('ws_1', { type: 'cancel', run_id: 'run_1' });
   */
  send(workstationId: string, message: ControlMessage): boolean {
    const held = message.type === 'cancel' ? this.unsentClaims.get(message.run_id)?.held : undefined;
    if (held) {
      held.push({ workstationId, message });
      return true;
    }
    const link = this.byWorkstation.get(workstationId);
    if (!link || link.socket.readyState !== 1) return false;
    // A link that has not registered yet is sent every offer of its workstation when it does
    // (link-server's `register`): sending one now as well would offer the run twice.
    const offer = message.type === 'offer' || message.type === 'offer-claimed';
    if (offer && !link.registered) {
      // Its `register` sends every run offered to it that its read sees; this one may be newer.
      (link.held ??= []).push(message);
      return true;
    }
    sendText(link, JSON.stringify(message));
    if (offer) runPathMetrics.offerMessages.inc();
    if (tracing && message.type === 'offer') traceMark('ws.sent', message.id);
    return true;
  }

  /**
   * Sends the offers held back while `link` was registering, except those of runs its
   * registration already re-sent (`sent`): each run is offered once. Runs claimed on offer
   * are sent only to the runner they were claimed for (`link.claimer`): a new runner on the
   * workstation hands a predecessor's runs back through its own start-up (release-orphans),
   * and dropping one claimed for this runner would leave it accepted, never started, until
   * its lease ran out.
   *
   * @example
   * links.flushHeld(link, new Set(registered.offered.map((r) => r.id)));
   */
  flushHeld(link: AgentLink, sent: Set<string>): void {
    const held = link.held ?? [];
    link.held = undefined;
    for (const m of held) {
      if (m.type === 'offer') {
        if (!sent.has(m.id)) this.send(link.workstationId, m);
      } else if (m.type === 'offer-claimed') {
        const holder = link.claimer?.holder;
        const runs = m.runs.filter(
          (c) => !sent.has(c.run.id) && holder !== undefined && c.run.lease?.holder === holder,
        );
        if (runs.length > 0) this.send(link.workstationId, { type: 'offer-claimed', runs });
      }
    }
  }

  /**
   * Holds back every cancel of `runIds` until the returned release is called, then sends them
   * (if the link is still here; else its re-registration elsewhere re-sends pending cancels).
   * The scheduler holds the runs it claims on offer from before its COMMIT until their
   * `offer-claimed` went out (after the WAL flush, on Postgres): a cancel committed meanwhile —
   * here, or on another replica and relayed by NOTIFY — would otherwise reach the agent first,
   * be ignored (a run it does not hold), and the run would start anyway, cancelled only at its
   * first lease renewal (`cancel_requested`).
   *
   * @example
   * const release = links.holdCancels(['run_1']); // … send its offer-claimed …; release();
   */
  holdCancels(runIds: string[]): () => void {
    // Counted: two passes may hold one run at once (a claim a crash lost, read back by one pass
    // while the next claims the run again); its cancels go out only at the last release.
    for (const id of runIds) {
      const entry = this.unsentClaims.get(id);
      if (entry) entry.holds++;
      else this.unsentClaims.set(id, { holds: 1, held: [] });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const id of runIds) {
        const entry = this.unsentClaims.get(id);
        if (!entry || --entry.holds > 0) continue;
        this.unsentClaims.delete(id);
        for (const m of entry.held) this.send(m.workstationId, m.message);
      }
    };
  }

  /**
   * Who the scheduler claims for on offer at `workstationId`: the runner of a registered, open
   * link of this process that asked for it; undefined otherwise (the run is offered plainly).
   */
  claimerOf(workstationId: string): { holder: string; leaseMs: number } | undefined {
    const link = this.byWorkstation.get(workstationId);
    return link && link.registered && link.socket.readyState === 1 ? link.claimer : undefined;
  }

  /** Closes every link opened with a credential (it was revoked). */
  closeCredential(credentialId: string, code: number, reason: string): number {
    let n = 0;
    for (const link of this.byWorkstation.values()) {
      if (link.credentialId !== credentialId) continue;
      link.socket.close(code, reason);
      n++;
    }
    return n;
  }

  /** Every current link. */
  all(): IterableIterator<AgentLink> {
    return this.byWorkstation.values();
  }

  get size(): number {
    return this.byWorkstation.size;
  }
}
