import type { ControlPlaneClient, EventType, RunEventInput } from '@runt/protocol';
import { isApiError } from '@runt/protocol';
import { retryDelay, sleep } from './sleep.js';

export interface RunEventLogOptions {
  client: Pick<ControlPlaneClient, 'appendEvents'>;
  runId: string;
  fencingToken: number;
  /** The seq the first event carries (`next_event_seq` of the claim). */
  nextSeq: number;
  /** Aborts the retries (the lease was lost or the agent is going down hard). */
  signal: AbortSignal;
  /** Called with 409 "run is no longer active" / a stale token: the run must be dropped. */
  onRejected: (error: Error) => void;
  /** Called after each acknowledged batch with the next seq and the log characters it carried. */
  onFlushed?: (nextSeq: number, logChars: { stdout: number; stderr: number }) => void;
  /** Wait this long after the first queued event before sending (default 20 ms): output in bursts goes in one request. */
  lingerMs?: number;
  /** Largest batch (default 500; the API takes 1000). */
  maxBatch?: number;
}

/**
 * A run's outgoing event stream: gives every event the next gap-free seq when it is queued,
 * sends them in batches, and resends the same seqs after a failure (the control plane ignores
 * a seq it already has), so a flaky network neither loses nor duplicates events. A 409 means
 * the lease is no longer ours: the log stops and calls `onRejected`.
 *
 * @example
 * const events = new RunEventLog({ client, runId, fencingToken, nextSeq: claim.next_event_seq, signal, onRejected: drop });
 * events.append('log', { stream: 'stdout', data: 'hello\n' });
 * await events.flush();
 */
export class RunEventLog {
  #next: number;
  #queue: (RunEventInput & { chars?: { stream: 'stdout' | 'stderr'; n: number } })[] = [];
  #timer: NodeJS.Timeout | undefined;
  #sending: Promise<void> | undefined;
  #rejected = false;
  readonly #sent = { stdout: 0, stderr: 0 };

  constructor(private readonly opts: RunEventLogOptions) {
    this.#next = opts.nextSeq;
  }

  /** The seq the next queued event gets. */
  get nextSeq(): number {
    return this.#next;
  }

  /** True once the control plane refused an append (409). */
  get rejected(): boolean {
    return this.#rejected;
  }

  /** Queues one event; it is sent within `lingerMs` (or at once when the batch is full). */
  append(type: EventType, payload: Record<string, unknown>): number {
    const seq = this.#next++;
    const data = payload.data;
    const stream = payload.stream;
    const chars =
      type === 'log' && typeof data === 'string' && (stream === 'stdout' || stream === 'stderr') && payload.command_id === undefined
        ? { stream: stream as 'stdout' | 'stderr', n: data.length }
        : undefined;
    this.#queue.push({ seq, type, payload, at: new Date().toISOString(), ...(chars ? { chars } : {}) });
    if (this.#queue.length >= (this.opts.maxBatch ?? 500)) void this.#kick();
    else this.#timer ??= setTimeout(() => void this.#kick(), this.opts.lingerMs ?? 20);
    return seq;
  }

  /** Sends everything queued so far; resolves once acknowledged (or the log was rejected / aborted). */
  async flush(): Promise<void> {
    while (this.#queue.length > 0 && !this.#rejected && !this.opts.signal.aborted) await this.#kick();
    await this.#sending;
  }

  #kick(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#sending ??= this.#drain().finally(() => {
      this.#sending = undefined;
    });
    return this.#sending;
  }

  async #drain(): Promise<void> {
    const max = this.opts.maxBatch ?? 500;
    let attempt = 0;
    while (this.#queue.length > 0 && !this.#rejected && !this.opts.signal.aborted) {
      const batch = this.#queue.slice(0, max);
      try {
        const res = await this.opts.client.appendEvents(this.opts.runId, {
          fencing_token: this.opts.fencingToken,
          events: batch.map(({ chars: _chars, ...e }) => e),
        });
        attempt = 0;
        this.#queue.splice(0, batch.length);
        for (const e of batch) if (e.chars) this.#sent[e.chars.stream] += e.chars.n;
        // After a re-adoption the server may be ahead of what we remembered: never reuse its seqs.
        if (res.next_event_seq > this.#next && this.#queue.length === 0) this.#next = res.next_event_seq;
        this.opts.onFlushed?.(batch.at(-1)!.seq + 1, { ...this.#sent });
      } catch (e) {
        if (isApiError(e) && (e.status === 409 || e.status === 403 || e.status === 404)) {
          this.#rejected = true;
          this.#queue = [];
          this.opts.onRejected(e);
          return;
        }
        if (!(await sleep(retryDelay(++attempt, 200, 10_000), this.opts.signal))) return;
      }
    }
  }
}
