import type { ClaimRunResponse, RegisterWorkstationRequest, Run } from '@runt/protocol';
import type { RunLifecycle } from '../runs/run-lifecycle.js';
import type { RunStore } from '../runs/run-store.js';
import type { WorkstationStore } from '../stores/workstation-store.js';

/** What a link is told after its `register`: a pending drain, and the offers and cancels it may have missed. */
export interface LinkRegistration {
  draining: boolean;
  offered: Run[];
  /** Runs claimed on offer for the link's runner that it has not started (claim on offer, issue 9). */
  claimed: ClaimRunResponse[];
  cancels: string[];
}

interface Waiting {
  workstationId: string;
  body: RegisterWorkstationRequest;
  /** The runner the link asked to be claimed for on offer. */
  holder: string | undefined;
  resolve: (r: LinkRegistration) => void;
  reject: (e: unknown) => void;
}

/**
 * A registration that brought a listening workstation kicks a scheduling pass at most this often
 * (ms): the first at once, the ones after it within the window share one pass at its end. A fleet
 * re-linking after a restart writes a batch every few milliseconds; a pass per batch kept the
 * database busy with passes over an unchanged queue (issue 9). The scheduler's tick places
 * anything a skipped kick would have.
 */
export const REGISTRATION_SCHEDULE_EVERY_MS = 100;

/**
 * Registrations arriving within this long (ms) of the last batch's start gather into the next
 * batch: a batch is written at most this often, at once when the last one started longer ago (an
 * idle control plane adds no wait). A fleet re-linking after a restart sends its `register`s
 * spread out (that is the jitter's point), so batching only what waited behind the one batch in
 * flight wrote ~3 links a batch — 3 statements each (the update, the offered-runs read, the
 * claimed-offers read): 21,830 claimed-offers reads for a 19,800-link restart (issue 9). At 1,000
 * links a second a window of 20 ms is ~20 links a batch, for at most 20 ms more per registration.
 */
export const REGISTRATION_GATHER_MS = 20;

/**
 * The link's `register` messages, written in batches: every registration that arrives within one
 * gather window ({@link REGISTRATION_GATHER_MS}; a fleet re-linking after a restart sends
 * thousands a second) is one
 * `update … from jsonb_to_recordset` of the workstations plus one read of offered runs and pending
 * cancels and one of runs claimed on offer for the links' runners (when any asked for it) for all
 * of them, instead of five statements per link. A batch that registered a listening workstation
 * asks for a scheduling pass (`schedule`), at most once per {@link REGISTRATION_SCHEDULE_EVERY_MS};
 * one of workstations that are not listening asks for none (nothing can be placed on them).
 * While a batch is being written the next one gathers (one batch in flight), and a batch is
 * written at most once per window, so the batches grow with the load and an idle control plane
 * adds no wait. Each caller gets its own answer; a failed batch fails
 * each of its callers (their link logs it, as before).
 *
 * @example
 * const registrations = new LinkRegistrations({ workstations, runs, replicaId: 'cp-1' });
 * const { draining, offered, cancels } = await registrations.register('ws_1', body);
 */
export class LinkRegistrations {
  #waiting: Waiting[] = [];
  /** A batch is being written: the next one gathers until it is done (group commit). */
  #writing = false;

  constructor(
    private readonly o: {
      workstations: WorkstationStore;
      runs: RunStore;
      /** Re-sends runs claimed on offer (none without it). */
      lifecycle?: Pick<RunLifecycle, 'claimedOffers'>;
      replicaId: string;
      /** Asks for a scheduling pass (`RunSignals.schedule`); called after the batch's callers resumed. */
      schedule?: () => void;
      /** Default {@link REGISTRATION_SCHEDULE_EVERY_MS}. */
      scheduleEveryMs?: number;
      /** Default {@link REGISTRATION_GATHER_MS}. */
      gatherMs?: number;
    },
  ) {}

  /** The pass asked for and not yet kicked. */
  #kick: NodeJS.Timeout | NodeJS.Immediate | undefined;
  /** performance.now() of the last kick. */
  #kickedAt = Number.NEGATIVE_INFINITY;
  /** performance.now() when the last batch started being written. */
  #flushedAt = Number.NEGATIVE_INFINITY;
  /** The next batch's write is due (a timer or an immediate): registrations join it. */
  #due = false;
  #closed = false;

  /** Drops a pass asked for and not yet kicked (the link server is closing). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#kick as NodeJS.Timeout);
    clearImmediate(this.#kick as NodeJS.Immediate);
    this.#kick = undefined;
  }

  /** One pass for every listening registration of the window (see REGISTRATION_SCHEDULE_EVERY_MS). */
  #scheduleSoon(): void {
    if (!this.o.schedule || this.#kick || this.#closed) return;
    const fire = () => {
      this.#kick = undefined;
      this.#kickedAt = performance.now();
      this.o.schedule!();
    };
    const wait =
      this.#kickedAt + (this.o.scheduleEveryMs ?? REGISTRATION_SCHEDULE_EVERY_MS) - performance.now();
    // At the earliest after this turn: the batch's links are marked registered (and their
    // claimers known) before the pass looks at them.
    this.#kick = wait > 0 ? setTimeout(fire, wait) : setImmediate(fire);
  }

  /** Registers one link's workstation (with the next batch) and answers what to send it. */
  register(
    workstationId: string,
    body: RegisterWorkstationRequest,
    holder?: string,
  ): Promise<LinkRegistration> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ workstationId, body, holder, resolve, reject });
      if (!this.#writing) this.#flushSoon();
    });
  }

  /** Writes the waiting registrations at the start of the next window (at once when it has begun). */
  #flushSoon(): void {
    if (this.#due || this.#waiting.length === 0) return;
    this.#due = true;
    const fire = () => {
      this.#due = false;
      void this.#flush();
    };
    const wait = this.#flushedAt + (this.o.gatherMs ?? REGISTRATION_GATHER_MS) - performance.now();
    if (wait > 0) setTimeout(fire, wait);
    else setImmediate(fire);
  }

  async #flush(): Promise<void> {
    if (this.#writing || this.#waiting.length === 0) return;
    const batch = this.#waiting;
    this.#waiting = [];
    this.#writing = true;
    this.#flushedAt = performance.now();
    try {
      const drains = await this.o.workstations.linkRegisteredMany(batch, this.o.replicaId);
      const holders = batch.flatMap((w) => (w.holder ? [{ ws: w.workstationId, holder: w.holder }] : []));
      // Two independent reads after the update: side by side (two pool connections on Postgres).
      const [resent, claimed] = await Promise.all([
        this.o.runs.resentOn(batch.map((w) => w.workstationId)),
        this.o.lifecycle?.claimedOffers(holders) ?? new Map<string, never>(),
      ]);
      for (const w of batch) {
        const r = resent.get(w.workstationId);
        w.resolve({
          draining: drains.get(w.workstationId)?.draining ?? false,
          offered: r?.offered ?? [],
          claimed: claimed.get(w.workstationId) ?? [],
          cancels: r?.cancels ?? [],
        });
      }
      if (batch.some((w) => w.body.listening)) this.#scheduleSoon();
    } catch (e) {
      for (const w of batch) w.reject(e);
    } finally {
      this.#writing = false;
      this.#flushSoon();
    }
  }
}
