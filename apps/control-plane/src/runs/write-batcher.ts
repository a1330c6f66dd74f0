import { runPathMetrics } from '../metrics.js';

/** How a {@link WriteBatcher} writes and groups. */
export interface WriteBatcherOptions<I, O> {
  /** Names the batcher in `runt_cp_write_batches_total{kind}`. */
  kind: string;
  /** Writes the items in ONE statement and answers each, in order (`out[i]` for `items[i]`). */
  write: (items: I[]) => Promise<O[]>;
  /**
   * Items with the same key never share a batch: the later one waits for the next (one run's
   * writes stay in order and a statement never touches a row twice).
   */
  key: (item: I) => string;
  /** At most this many items per statement (default 500). */
  maxItems?: number;
  /**
   * How long the first item of an idle batcher waits for company, in ms (default 0: the rest of
   * the current turn of the event loop, so a lone write is not delayed). While a statement is
   * in flight, whatever arrives queues for the next one: under load the window is the time
   * one statement takes, and the batch is everything queued meanwhile.
   */
  windowMs?: number;
  /**
   * When a statement of several items fails, write each item again alone (default true), so an
   * error reaches only the caller it belongs to. Set false for writes that are not safe to
   * repeat (an insert whose failure may have come after its commit, e.g. a connection lost at
   * `COMMIT`): every caller of the statement then gets its error, as each would alone.
   */
  aloneOnFailure?: boolean;
}

interface Pending<I, O> {
  item: I;
  resolve: (out: O) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit: callers hand in one write each and get their own answer, while the writes that
 * arrive together go to the database as one statement. One statement is in flight at a time
 * (PGlite has one connection; on Postgres each kind of write holds at most one pooled
 * connection). A statement is atomic, so when it fails nothing of it was written: every item
 * of it is then written alone (`write([item])`), so one bad item fails only its own caller and
 * an error is never given to the wrong one. Every answer comes after its statement committed.
 *
 * @example
 * const renewals = new WriteBatcher({ kind: 'renew', key: (i) => i.runId, write: (items) => transitions.renewMany(db, items) });
 * const out = await renewals.submit({ runId: 'run_1', workstationId: 'ws_1', token: 3, leaseMs: 30_000 });
 */
export class WriteBatcher<I, O> {
  readonly #o: Required<WriteBatcherOptions<I, O>>;
  #queue: Array<Pending<I, O>> = [];
  #scheduled = false;
  #inFlight = false;

  constructor(opts: WriteBatcherOptions<I, O>) {
    this.#o = { maxItems: 500, windowMs: 0, aloneOnFailure: true, ...opts };
  }

  /** Queues one write; resolves with its own answer once the statement that wrote it committed. */
  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      this.#schedule();
    });
  }

  /** Writes waiting for a statement (tests, metrics). */
  get queued(): number {
    return this.#queue.length;
  }

  #schedule(): void {
    if (this.#inFlight || this.#scheduled || this.#queue.length === 0) return;
    this.#scheduled = true;
    const go = () => {
      this.#scheduled = false;
      void this.#flush();
    };
    if (this.#o.windowMs > 0 && this.#queue.length < this.#o.maxItems) setTimeout(go, this.#o.windowMs);
    else setImmediate(go);
  }

  /** Takes up to `maxItems` items, at most one per key; the others stay queued in order. */
  #take(): Array<Pending<I, O>> {
    const batch: Array<Pending<I, O>> = [];
    const keys = new Set<string>();
    const rest: Array<Pending<I, O>> = [];
    for (const p of this.#queue) {
      const k = this.#o.key(p.item);
      if (batch.length < this.#o.maxItems && !keys.has(k)) {
        keys.add(k);
        batch.push(p);
      } else rest.push(p);
    }
    this.#queue = rest;
    return batch;
  }

  async #flush(): Promise<void> {
    if (this.#inFlight || this.#queue.length === 0) return;
    this.#inFlight = true;
    const batch = this.#take();
    try {
      runPathMetrics.writeBatches.inc({ kind: this.#o.kind });
      runPathMetrics.writeBatchItems.inc({ kind: this.#o.kind }, batch.length);
      let out: O[];
      try {
        out = await this.#o.write(batch.map((p) => p.item));
      } catch (err) {
        if (batch.length === 1 || !this.#o.aloneOnFailure) {
          for (const p of batch) p.reject(err);
          return;
        }
        // Nothing of the statement was written: each item alone, each answered with its own fate.
        runPathMetrics.writeBatchFallbacks.inc({ kind: this.#o.kind });
        for (const p of batch) {
          try {
            p.resolve((await this.#o.write([p.item]))[0]!);
          } catch (e) {
            p.reject(e);
          }
        }
        return;
      }
      batch.forEach((p, i) => p.resolve(out[i]!));
    } finally {
      this.#inFlight = false;
      this.#schedule();
    }
  }
}
