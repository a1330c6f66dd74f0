import { ApiError, apiErrorOf, unreachableError } from './errors.js';
import { backoffDelay, sleep } from './retry.js';
import { HttpTransport, TransportError, type TransportStream } from './transport.js';
import { runEventSchema, runStatusSchema, type RunEvent, type RunStatus } from './runs.js';

export interface FollowRunEventsOptions {
  /** Base URL of the control plane, e.g. `http://127.0.0.1:8787`. */
  url: string;
  /** Admin bearer token; a function is read on every (re)connect. */
  token?: string | (() => string | undefined);
  runId: string;
  /** Start after this seq (default 0: from the first event). */
  afterSeq?: number;
  signal?: AbortSignal;
  /** Reconnects after a dropped stream before giving up (default 5; reset by every event). */
  retries?: number;
  fetch?: typeof fetch;
}

/** One server-sent event as it came off the wire. */
export interface SseMessage {
  event: string;
  data: string;
  id?: string;
}

/**
 * Splits a `text/event-stream` body into messages (`event` defaults to `message`; comment lines
 * are skipped; multi-line `data` is joined with `\n`).
 *
 * @example
 * for await (const m of parseSse(res.body!)) console.log(m.id, m.data);
 */
export async function* parseSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const decoder = new TextDecoder();
  let buffer = '';
  let data: string[] = [];
  let event = '';
  let id: string | undefined;
  const reader = body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(buffer[nl] === '\r' && buffer[nl + 1] === '\n' ? nl + 2 : nl + 1);
        if (line === '') {
          if (data.length > 0)
            yield { event: event || 'message', data: data.join('\n'), ...(id === undefined ? {} : { id }) };
          data = [];
          event = '';
          id = undefined;
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') data.push(value);
        else if (field === 'event') event = value;
        else if (field === 'id') id = value;
      }
    }
  } finally {
    reader.releaseLock();
    await body.cancel().catch(() => {});
  }
}

/**
 * Follows a run's events live from `GET /api/runs/:id/events` with `Accept: text/event-stream`:
 * yields every event after `afterSeq` in seq order, then new ones as they are appended, and
 * returns the run's terminal status once the control plane ends the stream. A stream that drops
 * early is resumed with `Last-Event-ID` (no event is skipped or repeated), backing off with
 * jitter. Error answers throw {@link ApiError}.
 *
 * @example
 * for await (const e of followRunEvents({ url, token, runId })) {
 *   if (e.type === 'log') process.stdout.write(String(e.payload.data));
 * }
 */
export async function* followRunEvents(
  opts: FollowRunEventsOptions,
): AsyncGenerator<RunEvent, RunStatus | undefined> {
  const transport = new HttpTransport({
    url: opts.url,
    ...(opts.token === undefined ? {} : { token: opts.token }),
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
  });
  const base = transport.url;
  let after = opts.afterSeq ?? 0;
  let failures = 0;
  const retries = opts.retries ?? 5;
  for (;;) {
    opts.signal?.throwIfAborted();
    let res: TransportStream;
    try {
      res = await transport.stream({
        method: 'GET',
        path: `api/runs/${encodeURIComponent(opts.runId)}/events`,
        query: { after_seq: after },
        accept: 'text/event-stream',
        ...(after > 0 ? { headers: { 'last-event-id': String(after) } } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
    } catch (e) {
      if (opts.signal?.aborted || !(e instanceof TransportError)) throw e;
      if (++failures > retries) throw unreachableError(base, e.reason, e);
      if (!(await sleep(backoffDelay(failures), opts.signal))) opts.signal?.throwIfAborted();
      continue;
    }
    if (res.status >= 300 || !res.body) throw apiErrorOf(res.status, res.statusText, await res.json(), base);
    try {
      for await (const m of parseSse(res.body)) {
        if (m.event === 'end') {
          const status = runStatusSchema.safeParse(
            (JSON.parse(m.data) as { run_status?: unknown }).run_status,
          );
          return status.success ? status.data : undefined;
        }
        if (m.event !== 'message') continue;
        const event = runEventSchema.parse(JSON.parse(m.data));
        if (event.seq <= after) continue;
        after = event.seq;
        failures = 0;
        yield event;
      }
    } catch (e) {
      if (opts.signal?.aborted) throw e;
      if (e instanceof SyntaxError || (e as { name?: string }).name === 'ZodError') {
        throw new ApiError(0, 'invalid-response', `unexpected event from ${base}: ${(e as Error).message}`);
      }
    }
    // The stream ended without `end`: resume after the last event we saw.
    if (++failures > retries)
      throw new ApiError(0, 'unreachable', `the event stream of ${opts.runId} keeps dropping`);
    if (!(await sleep(backoffDelay(failures), opts.signal))) opts.signal?.throwIfAborted();
  }
}
