import http from 'node:http';
import https from 'node:https';
import { backoffDelay, parseRetryAfter, sleep, type BackoffOptions } from './retry.js';

/** When and how often {@link HttpTransport.request} retries. */
export interface RetryOptions extends BackoffOptions {
  /** Attempts after the first (default 3). */
  retries?: number;
  /** Answers retried (default 429, 502, 503, 504). Network failures are always retried. */
  statuses?: readonly number[];
  /** A `Retry-After` longer than this is not waited out: the answer is returned (default 60 s). */
  maxRetryAfterMs?: number;
  /** Retry a request that timed out (default false: a timeout is returned at once). */
  retryTimeouts?: boolean;
}

export interface HttpTransportOptions {
  /** Base URL, e.g. `http://127.0.0.1:8787`; request paths are relative to it. */
  url: string | URL;
  /** Bearer token; a function is read on every attempt (and may be async). */
  token?: string | (() => string | undefined | Promise<string | undefined>);
  /** Per-attempt timeout (default 15 s). */
  timeoutMs?: number;
  /** Retry policy of {@link HttpTransport.request}. */
  retry?: RetryOptions;
  /** Custom `fetch` (default the global one); with it, `keepAlive` is ignored. */
  fetch?: typeof globalThis.fetch;
  /**
   * Send requests with `node:http(s)` over a keep-alive agent instead of `fetch` (a fraction of
   * the per-request cost, for long-running Node callers with many small calls). Streams still use `fetch`.
   */
  keepAlive?: boolean;
  /**
   * Another way to the same endpoints, tried first on every attempt of {@link HttpTransport.send}
   * (the agent's link): it answers the request, or resolves `undefined` to send it over HTTP
   * (not its kind of request, link down, or the link dropped while it waited). Rejecting with a
   * {@link TransportError} is that attempt's failure (retried like a network failure).
   */
  via?: TransportVia;
}

/** See {@link HttpTransportOptions.via}; `timeoutMs` is the attempt's timeout. */
export type TransportVia = (req: TransportRequest, timeoutMs: number) => Promise<TransportAnswer | undefined>;

export interface TransportRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Relative to the base URL, without a leading slash: `api/runs/run_1`. */
  path: string;
  query?: Record<string, string | number | undefined>;
  /** Sent as `application/json`. */
  json?: unknown;
  /** Sent as `application/octet-stream`. */
  bytes?: Uint8Array;
  headers?: Record<string, string>;
  /** Aborting it rejects with its `reason` (never retried). */
  signal?: AbortSignal;
  /** This attempt's timeout (at most the transport's). */
  timeoutMs?: number;
}

/** A whole answer, read into memory. */
export interface TransportAnswer {
  status: number;
  statusText: string;
  header(name: string): string | undefined;
  body: Uint8Array;
  /** The body parsed as JSON; `undefined` when empty or not JSON. */
  json(): unknown;
}

/** An answer whose body is still streaming (see {@link HttpTransport.stream}). */
export interface TransportStream {
  status: number;
  statusText: string;
  header(name: string): string | undefined;
  body: ReadableStream<Uint8Array> | null;
  /** Reads the rest of the body as JSON; `undefined` when empty or not JSON. */
  json(): Promise<unknown>;
}

/**
 * The server could not be asked: `timeout` (no answer in time) or `network` (refused, reset,
 * DNS…). `reason` is one short word or phrase (`ECONNREFUSED`, `timed out`).
 */
export class TransportError extends Error {
  override readonly name = 'TransportError';
  constructor(
    readonly kind: 'timeout' | 'network',
    readonly reason: string,
    opts?: { cause?: unknown },
  ) {
    super(reason, opts);
  }
}

const DEFAULT_STATUSES: readonly number[] = [429, 502, 503, 504];

/**
 * The one HTTP client stack of runt's clients: bearer auth, JSON or byte bodies, per-attempt
 * timeouts, optional `node:http` keep-alive, and retries with {@link backoffDelay} honouring
 * `Retry-After`. It never interprets bodies: callers map answers to their own errors.
 *
 * @example
 * const t = new HttpTransport({ url: 'http://127.0.0.1:8787', token: 'rnt_ws_…', keepAlive: true });
 * const answer = await t.request({ method: 'GET', path: 'api/workstations' });
 * if (answer.status === 200) console.log(answer.json());
 */
export class HttpTransport {
  readonly url: string;
  readonly #opts: HttpTransportOptions;
  readonly #timeoutMs: number;
  readonly #agent: http.Agent | undefined;

  constructor(opts: HttpTransportOptions) {
    this.url = String(opts.url).replace(/\/+$/, '');
    this.#opts = opts;
    this.#timeoutMs = opts.timeoutMs ?? 15_000;
    if (opts.keepAlive && !opts.fetch) {
      const Agent = this.url.startsWith('https:') ? https.Agent : http.Agent;
      this.#agent = new Agent({ keepAlive: true, maxSockets: 64 });
    }
  }

  /**
   * Sends `req`, retrying network failures (timeouts only with `retryTimeouts`) and the retry
   * statuses with backoff; resolves with the last answer, whatever its status. Rejects with a
   * {@link TransportError} when the server could not be asked, or with `signal.reason`.
   */
  async request(
    req: TransportRequest,
    retry: RetryOptions = this.#opts.retry ?? {},
  ): Promise<TransportAnswer> {
    const retries = retry.retries ?? 3;
    const statuses = retry.statuses ?? DEFAULT_STATUSES;
    const maxRetryAfterMs = retry.maxRetryAfterMs ?? 60_000;
    for (let attempt = 1; ; attempt++) {
      let answer: TransportAnswer;
      try {
        answer = await this.send(req);
      } catch (e) {
        if (req.signal?.aborted || !(e instanceof TransportError)) throw e;
        if (attempt > retries || (e.kind === 'timeout' && !retry.retryTimeouts)) throw e;
        if (!(await sleep(backoffDelay(attempt, retry), req.signal))) throw req.signal?.reason;
        continue;
      }
      if (attempt > retries || !statuses.includes(answer.status)) return answer;
      const retryAfterMs = parseRetryAfter(answer.header('retry-after'));
      // A very long Retry-After is the server saying "not now": hand the answer back instead of sitting on it.
      if (retryAfterMs !== undefined && retryAfterMs > maxRetryAfterMs) return answer;
      if (!(await sleep(backoffDelay(attempt, { ...retry, retryAfterMs }), req.signal)))
        throw req.signal?.reason;
    }
  }

  /** One attempt, no retries; rejects with a {@link TransportError} or `signal.reason`. */
  async send(req: TransportRequest): Promise<TransportAnswer> {
    const timeoutMs = Math.max(1, Math.min(this.#timeoutMs, Math.floor(req.timeoutMs ?? this.#timeoutMs)));
    if (this.#opts.via) {
      const answered = await this.#opts.via(req, timeoutMs);
      if (answered) return answered;
    }
    const url = this.#urlOf(req);
    const headers = await this.#headers(req, 'application/json');
    const body = req.bytes ?? (req.json === undefined ? undefined : Buffer.from(JSON.stringify(req.json)));
    if (this.#agent) return sendNode(this.#agent, req.method, url, headers, body, timeoutMs, req.signal);
    const res = await this.#fetch(url, req.method, headers, body, timeoutMs, req.signal);
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      throw failure(e, req.signal);
    }
    return answerOf(res.status, res.statusText, (n) => res.headers.get(n) ?? undefined, bytes);
  }

  /**
   * Opens a streaming `GET` (server-sent events): one attempt through `fetch`, `accept` as given.
   * The timeout covers only the wait for the answer's headers.
   */
  async stream(req: TransportRequest & { accept: string }): Promise<TransportStream> {
    const url = this.#urlOf(req);
    const headers = await this.#headers(req, req.accept);
    const res = await this.#fetch(
      url,
      req.method,
      headers,
      undefined,
      req.timeoutMs ?? this.#timeoutMs,
      req.signal,
    );
    return {
      status: res.status,
      statusText: res.statusText,
      header: (n) => res.headers.get(n) ?? undefined,
      body: res.body,
      json: () => res.json().catch(() => undefined),
    };
  }

  #urlOf(req: TransportRequest): URL {
    const url = new URL(`${this.url}/${req.path}`);
    for (const [k, v] of Object.entries(req.query ?? {}))
      if (v !== undefined) url.searchParams.set(k, String(v));
    return url;
  }

  async #headers(req: TransportRequest, accept: string): Promise<Record<string, string>> {
    const t = this.#opts.token;
    const token = typeof t === 'function' ? await t() : t;
    return {
      accept,
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(req.json !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(req.bytes ? { 'content-type': 'application/octet-stream' } : {}),
      ...req.headers,
    };
  }

  async #fetch(
    url: URL,
    method: string,
    headers: Record<string, string>,
    body: Uint8Array | undefined,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<Response> {
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(new TransportError('timeout', 'timed out')), timeoutMs);
    try {
      return await (this.#opts.fetch ?? globalThis.fetch)(url, {
        method,
        headers,
        ...(body ? { body } : {}),
        signal: signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal,
      });
    } catch (e) {
      throw failure(e, signal, timeout.signal);
    } finally {
      clearTimeout(timer); // like ky: the timeout covers the wait for the answer's headers
    }
  }
}

function failure(e: unknown, signal: AbortSignal | undefined, timeout?: AbortSignal): Error {
  if (signal?.aborted) return signal.reason as Error;
  if (timeout?.aborted || (e as { name?: string })?.name === 'TimeoutError')
    return new TransportError('timeout', 'timed out', { cause: e });
  const err = e as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  return new TransportError(
    'network',
    err?.cause?.code ?? err?.code ?? err?.cause?.message ?? err?.message ?? String(e),
    { cause: e },
  );
}

/** The body of every answer made from parsed JSON: zero bytes, so one array serves them all. */
const NO_BODY = new Uint8Array(0);

/**
 * An answer whose JSON is already parsed: its methods on the prototype, not two closures and an
 * empty byte array per answer (an agent makes one per fenced call it sends over its link:
 * ~2 KB of the ~61 KB it allocated per run; issue 9, agent heap profile).
 */
class ParsedAnswer implements TransportAnswer {
  readonly statusText = '';
  readonly body = NO_BODY;
  readonly #json: unknown;
  readonly #headers: Readonly<Record<string, string>> | undefined;

  constructor(
    readonly status: number,
    json: unknown,
    headers: Readonly<Record<string, string>> | undefined,
  ) {
    this.#json = json;
    this.#headers = headers;
  }

  header(name: string): string | undefined {
    const headers = this.#headers;
    if (!headers) return undefined;
    const key = name.toLowerCase();
    return Object.hasOwn(headers, key) ? headers[key] : undefined;
  }

  json(): unknown {
    return this.#json;
  }
}

/**
 * A {@link TransportAnswer} of an already-parsed JSON body (for a {@link TransportVia} that got
 * its answer some other way than HTTP). `headers` by lower-case name.
 *
 * @example
 * return jsonAnswer(409, { error: { code: 'runner-lease-conflict', message: '…' } });
 */
export function jsonAnswer(
  status: number,
  json: unknown,
  headers?: Readonly<Record<string, string>>,
): TransportAnswer {
  return new ParsedAnswer(status, json, headers);
}

function answerOf(
  status: number,
  statusText: string,
  header: (name: string) => string | undefined,
  body: Uint8Array,
): TransportAnswer {
  return {
    status,
    statusText,
    header,
    body,
    json() {
      if (body.length === 0) return undefined;
      try {
        return JSON.parse(
          Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'),
        ) as unknown;
      } catch {
        return undefined;
      }
    },
  };
}

function sendNode(
  agent: http.Agent,
  method: string,
  url: URL,
  headers: Record<string, string>,
  body: Uint8Array | undefined,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<TransportAnswer> {
  if (signal?.aborted) return Promise.reject(signal.reason as Error);
  const send = url.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const all: Record<string, string | number> = { ...headers };
    if (body) all['content-length'] = body.byteLength;
    const req = send(url, { method, agent, headers: all }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        cleanup();
        const header = (name: string) => {
          const v = res.headers[name.toLowerCase()];
          return Array.isArray(v) ? v[0] : v;
        };
        resolve(answerOf(res.statusCode ?? 0, res.statusMessage ?? '', header, Buffer.concat(chunks)));
      });
      res.on('error', fail);
    });
    const onAbort = () => req.destroy(Object.assign(new Error('aborted'), { name: 'AbortError' }));
    const cleanup = () => signal?.removeEventListener('abort', onAbort);
    function fail(e: unknown) {
      cleanup();
      reject(failure(e, signal));
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    req.setTimeout(timeoutMs, () =>
      req.destroy(Object.assign(new Error('timed out'), { name: 'TimeoutError' })),
    );
    req.on('error', fail);
    req.end(body);
  });
}
