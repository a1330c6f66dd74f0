import type { ControlPlaneClient, EventType, RunEventInput } from '@runt/protocol';
import {
  BODY_LIMIT_BYTES_DEFAULT,
  backoffDelay,
  isApiError,
  logPayloads,
  SecretMasker,
  maskText,
  sleep,
  splitLogData,
} from '@runt/protocol';

/** Room left in a request for what is not an event (fencing token, a status report's fields). */
const BODY_HEADROOM_BYTES = 16 * 1024;
/** The smallest byte budget a 413 halves it to. */
const MIN_BATCH_BYTES = 8 * 1024;

type QueuedEvent = RunEventInput & {
  at: string;
  chars: { stream: 'stdout' | 'stderr'; n: number } | undefined;
  /** Its JSON's size in bytes (with a separator), measured when first needed; -1 until then. */
  bytes: number;
  /** A bound on `bytes` from the lengths of its strings alone (`jsonBytesBound`): no serialisation. */
  bound: number;
};

/**
 * An upper bound on the UTF-8 size of `JSON.stringify(v)`, from the lengths of its strings: one
 * UTF-16 unit of a string is at most 6 bytes of JSON (a `\uXXXX` escape; UTF-8 takes at most 3
 * a unit), a number at most 25 characters (`-0.0000012345678901234567`; 32 counted), `false`/`null` 5
 * and 4. An object with `toJSON` (a `Date`), or deeper than 8 levels (never an event's
 * payload): the exact size. So an event's size is known
 * to fit a batch without serialising it (issue 9, agent profile: `JSON.stringify` of every queued
 * event, two a run, only to measure it, where a batch of a run's events is far below the budget).
 */
function jsonBytesBound(v: unknown, depth = 0): number {
  switch (typeof v) {
    case 'string':
      return 6 * v.length + 2;
    case 'number':
      return 32;
    case 'boolean':
      return 5;
    case 'object':
      break;
    default:
      return 4; // undefined (left out, or `null` in an array), bigint/function/symbol never sent
  }
  if (v === null) return 4;
  if (depth >= 8 || typeof (v as { toJSON?: unknown }).toJSON === 'function')
    return Buffer.byteLength(JSON.stringify(v) ?? '');
  let n = 2;
  if (Array.isArray(v)) {
    for (const x of v) n += jsonBytesBound(x, depth + 1) + 1;
    return n;
  }
  for (const k in v) n += 6 * k.length + 4 + jsonBytesBound((v as Record<string, unknown>)[k], depth + 1);
  return n;
}

/**
 * A queued event as it is sent: a plain literal, not a spread or a rest copy (two events a run
 * in the bench's drain, each built and copied on the agent's hot path; issue 9, agent profile).
 */
const wire = (q: QueuedEvent): RunEventInput => ({ seq: q.seq, type: q.type, payload: q.payload, at: q.at });

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
  /**
   * Called after each acknowledged batch with the next seq and the log characters it carried;
   * `byReport` when a status report carried it (`take`/`settle`), not an append of its own.
   */
  onFlushed?: (nextSeq: number, logChars: { stdout: number; stderr: number }, byReport: boolean) => void;
  /** Wait this long after the first queued event before sending (default 20 ms): output in bursts goes in one request. */
  lingerMs?: number;
  /** Largest batch (default 500; the API takes 1000). */
  maxBatch?: number;
  /**
   * Largest batch in JSON bytes (default: the control plane's default body limit less 16 KiB).
   * A 413 halves it, so a control plane with a smaller `RUNT_BODY_LIMIT` is served too.
   */
  maxBatchBytes?: number;
  /**
   * The run's secret values: every occurrence in its output (and in the text fields of its other
   * events) is replaced by `***` before it is queued (`SecretMasker`, per stream and command).
   */
  secrets?: readonly string[];
}

/**
 * A run's outgoing event stream: gives every event the next gap-free seq when it is queued,
 * sends them in batches, and resends the same seqs after a failure (the control plane ignores
 * a seq it already has), so a flaky network neither loses nor duplicates events. A 409 means
 * the lease is no longer ours: the log stops and calls `onRejected`. Output of any size goes
 * through: a `log` event carries at most `LOG_EVENT_MAX_CHARS` (longer output is split into
 * several events) and a batch stays under the body limit in bytes.
 *
 * @example
 * const events = new RunEventLog({ client, runId, fencingToken, nextSeq: claim.next_event_seq, signal, onRejected: drop });
 * events.append('log', { stream: 'stdout', data: 'hello\n' });
 * await events.flush();
 */
export class RunEventLog {
  #next: number;
  #queue: QueuedEvent[] = [];
  /**
   * The queued events' sizes where measured, their `bound`s where not: while it is within the
   * budget, so is the queue's size in bytes.
   */
  #queuedBound = 0;
  /** The queue's events before this index are measured (`#schedule` measured them all then). */
  #measuredTo = 0;
  #budget: number;
  #timer: NodeJS.Timeout | undefined;
  #sending: Promise<void> | undefined;
  #rejected = false;
  /** A status report is carrying the queued head: linger sends wait for `settle`. */
  #held = false;
  readonly #sent = { stdout: 0, stderr: 0 };
  /**
   * One masker per output stream (`stdout`, `stderr`, `<command id>:stdout`, …) while secrets
   * are set; made with the first masker (a run without secrets makes no Map: issue 9, agent
   * heap profile — ~0.5 KB per run that a scavenge found alive and copied).
   */
  #maskers: Map<string, SecretMasker> | undefined;

  constructor(private readonly opts: RunEventLogOptions) {
    this.#next = opts.nextSeq;
    this.#budget = opts.maxBatchBytes ?? BODY_LIMIT_BYTES_DEFAULT - BODY_HEADROOM_BYTES;
  }

  /** The seq the next queued event gets. */
  get nextSeq(): number {
    return this.#next;
  }

  /** True once the control plane refused an append (409). */
  get rejected(): boolean {
    return this.#rejected;
  }

  /**
   * Queues one event (a `log` event longer than `LOG_EVENT_MAX_CHARS` as several, in order);
   * it is sent within `lingerMs`, or at once when a batch is full. Returns the (last) seq.
   */
  append(type: EventType, payload: Record<string, unknown>): number {
    if (this.opts.secrets?.length && type !== 'log') payload = this.#maskFields(payload);
    const data = payload.data;
    const pieces = type === 'log' && typeof data === 'string' ? splitLogData(data) : undefined;
    let seq = 0;
    for (const piece of pieces ?? [undefined])
      seq = this.#push(type, piece === undefined ? payload : { ...payload, data: piece });
    if (!this.#held) this.#schedule();
    return seq;
  }

  /**
   * Queues a chunk of output: as text when it is storable text, else as base64 of its bytes
   * (`logPayloads`), so any byte sequence round-trips. `extra` (e.g. `command_id`) goes in every
   * payload. Counted for a restart's skip in characters of `data`, on the chunk's last event.
   */
  appendOutput(
    stream: 'stdout' | 'stderr',
    data: string,
    bytes?: Uint8Array,
    extra: Record<string, unknown> = {},
  ): number {
    if (this.opts.secrets?.length) {
      const key = `${typeof extra.command_id === 'string' ? `${extra.command_id}:` : ''}${stream}`;
      const maskers = (this.#maskers ??= new Map<string, SecretMasker>());
      let masker = maskers.get(key);
      if (!masker) maskers.set(key, (masker = new SecretMasker(this.opts.secrets)));
      const out = masker.push(data);
      return this.#queueMasked(stream, out.text, out.raw, extra);
    }
    const payloads = logPayloads(stream, data, bytes);
    if (payloads.length === 1 && payloads[0]!.encoding === undefined)
      return this.append('log', { ...payloads[0], ...extra });
    let seq = 0;
    for (const [i, p] of payloads.entries())
      seq = this.#push('log', { ...p, ...extra }, i === payloads.length - 1 ? data.length : 0);
    if (!this.#held) this.#schedule();
    return seq;
  }

  /**
   * The output of the run (no `commandId`) or of one command ended: what its maskers held back
   * (a possible start of a secret value) is queued, masked.
   */
  endOutput(commandId?: string): void {
    const maskers = this.#maskers;
    if (!maskers) return;
    for (const stream of ['stdout', 'stderr'] as const) {
      const key = `${commandId === undefined ? '' : `${commandId}:`}${stream}`;
      const masker = maskers.get(key);
      if (!masker) continue;
      maskers.delete(key);
      const out = masker.end();
      this.#queueMasked(stream, out.text, out.raw, commandId === undefined ? {} : { command_id: commandId });
    }
  }

  /** Masked output: as text (its bytes are not what the workload wrote), counted in raw characters. */
  #queueMasked(
    stream: 'stdout' | 'stderr',
    text: string,
    raw: number,
    extra: Record<string, unknown>,
  ): number {
    if (text.length === 0) return this.#next - 1;
    const payloads = logPayloads(stream, text).flatMap((p) =>
      p.encoding === undefined ? splitLogData(p.data).map((data) => ({ ...p, data })) : [p],
    );
    let seq = 0;
    for (const [i, p] of payloads.entries())
      seq = this.#push('log', { ...p, ...extra }, i === payloads.length - 1 ? raw : 0);
    if (!this.#held) this.#schedule();
    return seq;
  }

  /** A non-output event's text fields with secret values masked. */
  #maskFields(payload: Record<string, unknown>): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(payload)) {
      if (typeof v !== 'string') {
        out[k] = v;
        continue;
      }
      out[k] = maskText(v, this.opts.secrets!);
    }
    return out;
  }

  #schedule(): void {
    if (this.#queue.length >= (this.opts.maxBatch ?? 500) || this.#queuedBytesAtLeastBudget())
      void this.#kick();
    else this.#timer ??= setTimeout(() => void this.#kick(), this.opts.lingerMs ?? 20);
  }

  #push(type: EventType, payload: Record<string, unknown>, textChars?: number): number {
    const seq = this.#next++;
    const data = payload.data;
    const stream = payload.stream;
    const chars =
      type === 'log' &&
      typeof data === 'string' &&
      (stream === 'stdout' || stream === 'stderr') &&
      payload.command_id === undefined
        ? {
            stream: stream === 'stdout' ? ('stdout' as const) : ('stderr' as const),
            n: textChars ?? data.length,
          }
        : undefined;
    const at = new Date().toISOString();
    // `{"seq":N,"type":"T","payload":P,"at":"A"}` and a separator: 60 bytes of keys, punctuation
    // and `at` (24 characters), the seq as any number (32), the type's quotes (2)
    const bound = jsonBytesBound(payload) + 6 * type.length + 94;
    this.#queue.push({ seq, type, payload, at, chars, bytes: -1, bound });
    this.#queuedBound += bound;
    return seq;
  }

  /**
   * Whether the queued events' JSON takes the whole byte budget: measured only when their bounds
   * say it may, each event once.
   */
  #queuedBytesAtLeastBudget(): boolean {
    if (this.#queuedBound < this.#budget) return false;
    const queue = this.#queue;
    for (let i = this.#measuredTo; i < queue.length; i++) this.#bytesOf(queue[i]!);
    this.#measuredTo = queue.length;
    return this.#queuedBound >= this.#budget;
  }

  /** The exact size of a queued event as sent (with a separator), measured once. */
  #bytesOf(q: QueuedEvent): number {
    if (q.bytes < 0) {
      q.bytes =
        Buffer.byteLength(JSON.stringify({ seq: q.seq, type: q.type, payload: q.payload, at: q.at })) + 1;
      this.#queuedBound += q.bytes - q.bound;
    }
    return q.bytes;
  }

  /** The head of the queue that fits one request: at most `maxBatch` events and the byte budget (at least one event). */
  #batch(): QueuedEvent[] {
    const max = this.opts.maxBatch ?? 500;
    const queue = this.#queue;
    // Within the budget by its bound: the whole head of `max` fits, nothing measured.
    if (this.#queuedBound <= this.#budget) return queue.length <= max ? queue.slice() : queue.slice(0, max);
    let n = 0;
    let bytes = 0;
    while (n < queue.length && n < max && (n === 0 || bytes + this.#bytesOf(queue[n]!) <= this.#budget))
      bytes += this.#bytesOf(queue[n++]!);
    return queue.slice(0, n);
  }

  /**
   * A status report that carries the queued events (`take`) is coming soon (a started run's
   * `running` report, or its end): what is queued until then waits for it instead of arming the
   * linger timer (one timer a run fewer, and for a run that outlives the report's delay one
   * `appendEvents` request fewer: its `started` event rides with the report; issue 9, agent
   * profile). Ends with the report's {@link settle}.
   */
  holdForReport(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#held = true;
  }

  /**
   * Hands the queued events to a status report that carries them (one request instead of two).
   * Waits for a send in flight; when more than a batch is queued it sends them itself and
   * returns none. Until {@link settle}, queued events are held back (not sent on a timer).
   *
   * @example
   * const events = await log.take();
   * const res = await client.reportStatus(runId, { fencing_token, status: 'running', events });
   * log.settle(res.next_event_seq !== undefined ? events : undefined);
   */
  async take(): Promise<RunEventInput[]> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#sending;
    if (this.#batch().length < this.#queue.length) await this.flush();
    if (this.#rejected || this.opts.signal.aborted) return [];
    this.#held = true;
    return this.#queue.map(wire);
  }

  /**
   * Ends a {@link take}: `carried` are the events the control plane stored with the report
   * (they count as sent); `undefined` when it did not take them (they go out as usual).
   */
  settle(carried: RunEventInput[] | undefined): void {
    this.#held = false;
    if (carried && carried.length > 0) this.#acked(carried.at(-1)!.seq + 1, true);
    if (this.#queue.length > 0 && !this.#rejected)
      this.#timer ??= setTimeout(() => void this.#kick(), this.opts.lingerMs ?? 20);
  }

  /** Everything below `nextSeq` was stored: drop it from the queue and count its output. */
  #acked(nextSeq: number, byReport = false): void {
    let n = 0;
    while (n < this.#queue.length && this.#queue[n]!.seq < nextSeq) n++;
    if (n === 0) return;
    this.#measuredTo = Math.max(0, this.#measuredTo - n);
    for (const e of this.#queue.splice(0, n)) {
      this.#queuedBound -= e.bytes < 0 ? e.bound : e.bytes;
      if (e.chars) this.#sent[e.chars.stream] += e.chars.n;
    }
    this.opts.onFlushed?.(nextSeq, { ...this.#sent }, byReport);
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
    let attempt = 0;
    while (this.#queue.length > 0 && !this.#rejected && !this.opts.signal.aborted) {
      const batch = this.#batch();
      try {
        const res = await this.opts.client.appendEvents(this.opts.runId, {
          fencing_token: this.opts.fencingToken,
          events: batch.map(wire),
        });
        attempt = 0;
        this.#acked(batch.at(-1)!.seq + 1);
        // After a re-adoption the server may be ahead of what we remembered: never reuse its seqs.
        if (res.next_event_seq > this.#next && this.#queue.length === 0) this.#next = res.next_event_seq;
      } catch (e) {
        // A gap is not a refusal: the control plane says where it expects the next event (it
        // is behind what this log numbered, e.g. a state file older than the run's events):
        // renumber what is queued from there and resend (issue 7: decided on the code, not on 409).
        const resumeAt = gapResumesAt(e);
        if (resumeAt !== undefined && this.#queue.length > 0 && resumeAt < this.#queue[0]!.seq) {
          const shift = resumeAt - this.#queue[0]!.seq;
          for (const q of this.#queue) q.seq += shift;
          this.#next += shift;
          continue;
        }
        if (isApiError(e) && (e.status === 409 || e.status === 403 || e.status === 404)) {
          this.#rejected = true;
          this.#queue = [];
          this.#queuedBound = 0;
          this.#measuredTo = 0;
          this.opts.onRejected(e);
          return;
        }
        // The control plane takes smaller bodies than we assumed: halve the batch and resend at once.
        if (isApiError(e) && e.status === 413 && this.#budget > MIN_BATCH_BYTES) {
          this.#budget = Math.max(MIN_BATCH_BYTES, Math.floor(this.#budget / 2));
          continue;
        }
        if (!(await sleep(backoffDelay(++attempt, { baseMs: 200, capMs: 10_000 }), this.opts.signal))) return;
      }
    }
  }
}

/** `details.next_event_seq` of a 409 `event-seq-gap`, or `undefined` for any other error. */
function gapResumesAt(e: unknown): number | undefined {
  if (!isApiError(e, 'event-seq-gap')) return undefined;
  const next = (e.details as { next_event_seq?: unknown } | undefined)?.next_event_seq;
  return typeof next === 'number' && Number.isSafeInteger(next) && next >= 1 ? next : undefined;
}
