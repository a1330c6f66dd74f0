import type { Logger } from 'pino';
import { sqlLiteral, type Database, type Queryable } from '@runt/sql';
import type { ControlMessage } from '@runt/protocol';
import type { NotificationBus } from '../notifications/bus.js';
import type { RunStore } from '../runs/run-store.js';
import { toRun, type RunRow } from '../runs/run-row.js';
import type { LinkRegistry } from './link-registry.js';
import { traceMark, tracing } from '../trace.js';

/** Messages for agents whose link another replica holds. */
export const LINK_CHANNEL = 'runt_link';
/** "Capacity was freed or a workstation changed": other replicas' schedulers stop skipping submits. */
export const SCHEDULE_CHANNEL = 'runt_schedule';

/** Postgres refuses NOTIFY payloads of 8000 bytes or more; larger offers travel as their run id. */
export const MAX_NOTIFY_PAYLOAD = 7900;

/** One message for one workstation's agent. */
export interface LinkMessage {
  workstationId: string;
  message: ControlMessage;
}

/**
 * On the wire: the message itself, or only the id of an offered run too big to carry, or (a
 * submit that placed its run: `freshOffer`) that id with the offered run's row.
 */
type Wire = { w: string; m: ControlMessage } | { w: string; offer: string; row?: RunRow };

export interface LinkRelayOptions {
  db: Database;
  bus: NotificationBus;
  links: LinkRegistry;
  runs: RunStore;
  logger: Logger;
  /** How often links are re-sent what they may have missed while the LISTEN is down. */
  scanMs: number;
  /** Told when another replica freed capacity (its scheduler placed what it could already). */
  onCapacityFreed: () => void;
}

/**
 * Delivers agent messages across replicas. A message for a link this process holds is sent at
 * once; one for a link held elsewhere (or nowhere) is published with `pg_notify` on
 * {@link LINK_CHANNEL} — inside the writer's transaction where the caller passes one, so the
 * notification exists exactly when the write does — and the replica holding the link sends it.
 *
 * Nothing depends on a notification arriving: an agent that (re)registers is re-sent its offers
 * and cancels, and while this replica's LISTEN connection is down (and once when it is back)
 * every link it holds is re-sent them every `scanMs`. Agents ignore offers they already took.
 * On PGlite there is one process: every link is local and nothing is published.
 *
 * @example
 * const relay = new LinkRelay({ db, bus, links, runs, logger, scanMs: 1000, onCapacityFreed: () => scheduler.kick() });
 * const later = await relay.relay(tx, [{ workstationId: 'ws_1', message: { type: 'drain' } }]);
 * relay.start(); relay.stop();
 */
export class LinkRelay {
  #listening = false;
  #timer: NodeJS.Timeout | undefined;
  #freedPending = false;

  constructor(private readonly o: LinkRelayOptions) {
    o.bus.subscribe(LINK_CHANNEL, {
      message: (payload) => this.#receive(payload),
      up: () => {
        const wasDown = !this.#listening;
        this.#listening = true;
        if (wasDown) void this.resync();
      },
      down: () => (this.#listening = false),
    });
    o.bus.subscribe(SCHEDULE_CHANNEL, {
      message: () => o.onCapacityFreed(),
      up: () => o.onCapacityFreed(),
      down: () => {},
    });
  }

  /** Whether notifications can cross processes at all (Postgres). */
  get shared(): boolean {
    return this.o.bus.available;
  }

  /** Starts the fallback scan (it only acts while the LISTEN is down). */
  start(): void {
    if (!this.shared) return;
    this.#timer = setInterval(() => {
      if (!this.#listening) void this.resync();
    }, this.o.scanMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /**
   * Publishes, in `q` (a transaction, so it is sent on commit), the messages for links this
   * process does not hold (and, with `capacityFreed`, a {@link SCHEDULE_CHANNEL} notification),
   * and returns the others for the caller to `send` after its commit. The `pg_notify` goes with
   * the transaction's `COMMIT` (`Queryable.atCommit`) when `q` offers it.
   */
  async relay(q: Queryable, items: LinkMessage[], capacityFreed = false): Promise<LinkMessage[]> {
    if (!this.shared) return items;
    const local: LinkMessage[] = [];
    const payloads: string[] = [];
    for (const it of items) {
      if (this.o.links.get(it.workstationId)) local.push(it);
      else payloads.push(encode(it));
    }
    const notes = payloads.map((p) => `('${LINK_CHANNEL}', ${sqlLiteral(p)})`);
    if (capacityFreed) notes.push(`('${SCHEDULE_CHANNEL}', '')`);
    if (notes.length === 0) return local;
    // With the transaction's COMMIT where it can (no round trip of its own: issue 10's offer
    // latency), else now; either way NOTIFY is sent on commit only.
    const notify = `select pg_notify(n.channel, n.payload) from (values ${notes.join(', ')}) as n(channel, payload)`;
    if (q.atCommit) q.atCommit(notify);
    else await q.query(notify);
    return local;
  }

  /** Sends now over a link held here only: false when this process holds no open link for it. */
  sendHere(workstationId: string, message: ControlMessage): boolean {
    return this.o.links.send(workstationId, message);
  }

  /** Sends now over a link held here, or publishes in its own statement (after the caller's commit). */
  send(workstationId: string, message: ControlMessage): void {
    if (this.o.links.send(workstationId, message) || !this.shared) return;
    this.o.db
      .query(`select pg_notify('${LINK_CHANNEL}', $1)`, [encode({ workstationId, message })])
      .catch((e: unknown) =>
        this.o.logger.warn(
          { err: (e as Error).message, workstation_id: workstationId },
          'link message not published',
        ),
      );
  }

  /** Tells the other replicas that capacity was freed (coalesced per macrotask). */
  capacityFreed(): void {
    if (!this.shared || this.#freedPending) return;
    this.#freedPending = true;
    setImmediate(() => {
      this.#freedPending = false;
      this.o.db.query(`select pg_notify('${SCHEDULE_CHANNEL}', '')`).catch(() => {}); // the others' ticks cover it
    });
  }

  /** Re-sends every link held here its offered runs and pending cancels (what a notification may have carried). */
  async resync(): Promise<void> {
    for (const link of [...this.o.links.all()]) {
      if (!link.registered) continue;
      try {
        for (const run of await this.o.runs.offeredTo(link.workstationId))
          this.o.links.send(link.workstationId, { type: 'offer', id: run.id, run });
        for (const runId of await this.o.runs.cancelRequestedOn(link.workstationId))
          this.o.links.send(link.workstationId, { type: 'cancel', run_id: runId });
      } catch (e) {
        this.o.logger.warn({ err: (e as Error).message }, 'link resync failed');
        return;
      }
    }
  }

  #receive(payload: string): void {
    // Every replica hears every notification of the channel: one that holds none of its links
    // drops it from its head, without parsing the run it carries (~1 KB of JSON each).
    const addressee = wireAddressee(payload);
    if (addressee !== undefined && !this.o.links.get(addressee)) return;
    let wire: Wire;
    try {
      wire = JSON.parse(payload) as Wire;
    } catch {
      return;
    }
    if (!this.o.links.get(wire.w)) return; // another replica's link, or none
    if (tracing)
      traceMark(
        'notify.received',
        'm' in wire && wire.m.type === 'offer' ? wire.m.id : 'offer' in wire ? wire.offer : '-',
      );
    if ('m' in wire) {
      this.o.links.send(wire.w, wire.m);
      return;
    }
    if (wire.row) {
      const run = toRun(wire.row);
      if (run.id === wire.offer && run.status === 'offered' && run.workstation_id === wire.w)
        this.o.links.send(wire.w, { type: 'offer', id: run.id, run });
      return;
    }
    void this.o.runs
      .get(wire.offer)
      .then((run) => {
        if (run && run.status === 'offered' && run.workstation_id === wire.w)
          this.o.links.send(wire.w, { type: 'offer', id: run.id, run });
      })
      .catch(() => {}); // the offer is re-sent on re-register, or withdrawn after the offer timeout
  }
}

// The head of every payload on the wire: `{"w":"…"` as `encode` writes it, `{"w" : "…"` as
// Postgres's `json_build_object` does (a submit's placement); an id with an escape in it does
// not match, and its payload is parsed whole.
const WIRE_HEAD = /^\{\s*"w"\s*:\s*"([^"\\]*)"/;

/**
 * The workstation a payload of {@link LINK_CHANNEL} is for, read from its head alone; undefined
 * when the head is not in the plain form both writers use (the caller then parses it whole).
 *
 * @example
 * wireAddressee('{"w" : "ws_1", "offer" : "run_1"}'); // 'ws_1'
 */
function wireAddressee(payload: string): string | undefined {
  return WIRE_HEAD.exec(payload)?.[1];
}

function encode(it: LinkMessage): string {
  const whole = JSON.stringify({ w: it.workstationId, m: it.message });
  if (Buffer.byteLength(whole) < MAX_NOTIFY_PAYLOAD) return whole;
  if (it.message.type === 'offer') return JSON.stringify({ w: it.workstationId, offer: it.message.id });
  throw new Error(`a ${it.message.type} message is too large to relay`);
}
