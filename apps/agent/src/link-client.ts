import { performance } from 'node:perf_hooks';
import WebSocket, { type RawData } from 'ws';
import type { Logger } from 'pino';
import {
  BASE_LINK_OPS,
  backoffDelay,
  corkForTurn,
  LINK_CLOSE_CODES,
  parseControlMessage,
  parseRetryAfter,
  sleep,
  TransportError,
  type AgentMessage,
  type ControlMessage,
  type ControlReplyMessage,
  type Corkable,
  type LinkOp,
} from '@runt/protocol';
import { AgentError } from './agent-error.js';
import type { Reachability } from './reachability.js';
import { traceMark, tracing } from './trace.js';

export interface LinkClientOptions {
  /** Control plane base URL (http or https), read before every attempt; the link is `ws(s)://…/api/agent/link`. */
  url: string | (() => string);
  /** Told after each attempt which URL it used and whether the link opened (fail-over across several URLs). */
  onAttempt?: (url: string, opened: boolean) => void;
  token: () => string;
  /** The `register` message, built afresh on every (re)connect. */
  register: () => AgentMessage;
  onMessage: (message: ControlMessage) => void;
  /** Called with `true` when a link is open and registered, `false` when it dropped. */
  onUp: (up: boolean) => void;
  /** Unrecoverable: the credential was refused or revoked. The loop has ended. */
  onFatal: (error: AgentError) => void;
  /**
   * Told after every dial that did not open a link. `ms` when the upgrade was refused with a
   * `Retry-After` (a control plane shedding upgrades is up and takes this agent back then): the
   * answer to the re-dial it makes then is due within `ms` (that wait, its jitter and the
   * handshake timeout; at most {@link LINK_SHED_HOLD_MAX_MS}), and the agent holds its HTTP
   * fallback until then (`LinkDownGrace.hold`). `undefined` otherwise (unreachable, or refused
   * without a time): any hold is over.
   */
  onHold?: (ms: number | undefined) => void;
  /** Told when a link opens and when an attempt could not reach the control plane (logged once per outage there). */
  reach?: Pick<Reachability, 'reached' | 'unreachable'>;
  logger: Logger;
  /** WebSocket ping period; a link that misses two pongs is torn down (default 15 s). */
  pingIntervalMs?: number;
  /**
   * Backoff ceiling between reconnects (default {@link LINK_BACKOFF_CAP_MS}). Reconnects use full
   * jitter: the wait is drawn from [0, min(cap, 0.5 s · 2^(attempt−1))].
   */
  maxBackoffMs?: number;
  /**
   * The first dial waits a random time in [0, startJitterMs] (default
   * {@link LINK_START_JITTER_MS}), so a fleet started at once does not dial in the same second.
   */
  startJitterMs?: number;
  /** Source of randomness in [0, 1) for the waits (default `Math.random`). */
  random?: () => number;
  /**
   * The local address to dial from (default: the kernel's choice). One host holding many links
   * to one control plane address (the links bench's doubles) needs several: Linux looks for a
   * free ephemeral port per `connect()` by walking its range, which at ~10,000 connections from
   * one address to one port costs milliseconds of kernel CPU per dial.
   */
  localAddress?: string;
  /**
   * How long a dial may take from `connect()` to the upgrade's answer (default
   * {@link LINK_HANDSHAKE_TIMEOUT_MS}); past it the attempt fails and the agent backs off.
   */
  handshakeTimeoutMs?: number;
}

/** Default `LinkClientOptions.handshakeTimeoutMs`. */
export const LINK_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * The first dial is spread over this window (a fleet started at once; see docs/agent.md, _Link_).
 * Buildkite's agent jitters every ping, the first one included, within its ping interval.
 */
export const LINK_START_JITTER_MS = 5_000;
/**
 * Reconnects back off from 0.5 s doubling to this ceiling with full jitter: after a control-plane
 * restart a fleet's dials spread evenly over at most this window (issue 9: 20,000 agents linked
 * again within 20 s).
 */
export const LINK_BACKOFF_CAP_MS = 15_000;
/**
 * An upgrade refused with a `Retry-After` (a control plane shedding upgrades hands each agent its
 * own place in a queue, in whole seconds) is dialled again after it plus a random part of this
 * (ms), so the agents told the same second spread over it.
 */
export const LINK_RETRY_AFTER_SPREAD_MS = 1_000;

/**
 * The longest an upgrade's `Retry-After` holds the agent's HTTP fallback (`onHold`): twice the
 * furthest place runt's control plane hands out (`LINK_SHED_MAX_RETRY_AFTER_S`, 60 s), so a
 * proxy's hour-long `Retry-After` does not silence the agent that long.
 */
export const LINK_SHED_HOLD_MAX_MS = 120_000;

/** Upgrade answers of a proxy whose control plane is not there. */
const GATEWAY_STATUSES = new Set([502, 503, 504]);
/** Close codes of a link that dropped (the control plane stopped, the network broke): the next attempt says more. */
const DROP_CODES = new Set<number>([LINK_CLOSE_CODES.shutdown, 1006, 1012]);

/** A request waiting for its reply. */
interface Pending {
  resolve: (reply: ControlReplyMessage | undefined) => void;
  reject: (e: Error) => void;
  /** performance.now() past which it fails with a timeout (the link's one deadline timer). */
  deadline: number;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

interface AttemptResult {
  url: string;
  /** performance.now() when the attempt began. */
  startedAt: number;
  /** The socket error's code (`ECONNREFUSED`), when there was one. */
  errorCode?: string;
  opened: boolean;
  code?: number;
  httpStatus?: number;
  /** The refusal's `Retry-After` (a control plane shedding upgrades sends one). */
  retryAfterMs?: number;
  reason?: string;
}

/**
 * The agent's end of the persistent link: dials `GET /api/agent/link` with the workstation
 * token in the upgrade's `Authorization` header, sends `register`, hands every validated
 * control message to `onMessage`, and reconnects with exponential backoff plus jitter when the
 * link drops (a revoked or refused credential ends the loop through `onFatal`); the first dial
 * waits a random part of `startJitterMs` too, so neither a fleet's start nor a control plane's
 * restart brings every agent at once. It also carries the agent's fenced run calls (`request`,
 * answered by a `reply` with the same `id`; see `linkVia`). Losing it costs latency only: calls
 * already in flight go over HTTP, and the agent polls over HTTP once the link has stayed down a
 * while (`LinkDownGrace`).
 *
 * @example
 * const link = new LinkClient({ url, token: () => token, register, onMessage, onUp, onFatal, logger });
 * void link.run(signal);
 * link.send({ type: 'heartbeat', running_run_ids: [] });
 */
export class LinkClient {
  #ws: WebSocket | undefined;
  /** The TCP socket under `#ws`: corked per turn, so the frames of one turn leave in one write. */
  #raw: Corkable | undefined;
  #up = false;
  /** Requests sent on the current socket, by id. */
  readonly #pending = new Map<string, Pending>();
  /** The last request id: ids only need to be unique among this agent's requests in flight. */
  #lastId = 0;
  /** The ops the current link's control plane listed in `registered` (none yet: only `BASE_LINK_OPS`). */
  #ops: ReadonlySet<string> | undefined;
  /**
   * One timer for every request's deadline, armed for the earliest (not one timer per request:
   * issue 9, agent profile). A reply does not disarm it; when it fires it fails the requests
   * past their deadlines and re-arms for the next one.
   */
  #deadlines: NodeJS.Timeout | undefined;
  /** When `#deadlines` fires (performance.now()); Infinity when disarmed. */
  #deadlinesAt = Infinity;

  constructor(private readonly opts: LinkClientOptions) {}

  /** True while a link is open. */
  get up(): boolean {
    return this.#up;
  }

  /** True when the open link's control plane listed `name` (an op or an op form) in `registered`. */
  serves(name: string): boolean {
    return this.#up && this.#ops?.has(name) === true;
  }

  /** Sends a message when the link is open; `false` when it is down (the caller falls back to HTTP). */
  send(message: AgentMessage): boolean {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    this.#sendText(ws, JSON.stringify(message));
    return true;
  }

  /**
   * Sends a fenced run call over the link and waits for its reply (see `link-requests.ts` in
   * `@runt/protocol`). Resolves `undefined` when the link is down or drops before the reply (the
   * caller sends it over HTTP instead: every op is idempotent or fenced), and for an op beyond
   * `BASE_LINK_OPS` that the link's control plane did not list in `registered`; rejects with a
   * `TransportError('timeout')` after `timeoutMs`, or with `signal`'s reason.
   *
   * @example
   * const reply = await link.request('heartbeat', runId, { fencing_token: 3, lease_ms: 30_000 }, 15_000);
   */
  request(
    op: LinkOp,
    target: string,
    body: unknown,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<ControlReplyMessage | undefined> {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.resolve(undefined);
    // An op this control plane did not list would close the link: HTTP instead.
    if (!BASE_LINK_OPS.has(op) && !this.#ops?.has(op)) return Promise.resolve(undefined);
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    const id = String(++this.#lastId);
    const deadline = performance.now() + timeoutMs;
    return new Promise<ControlReplyMessage | undefined>((resolve, reject) => {
      const pending: Pending = {
        resolve: (reply) => {
          this.#settled(id, pending);
          resolve(reply);
        },
        reject: (e) => {
          this.#settled(id, pending);
          reject(e);
        },
        deadline,
        signal,
        onAbort: undefined,
      };
      if (signal) {
        pending.onAbort = () => pending.reject(signal.reason as Error);
        signal.addEventListener('abort', pending.onAbort, { once: true });
      }
      this.#pending.set(id, pending);
      if (deadline < this.#deadlinesAt) this.#armDeadlines(deadline);
      this.#sendText(ws, JSON.stringify({ type: 'request', id, op, target, body }), (e) => {
        // Not sent (the socket is closing): HTTP instead.
        if (e) this.#pending.get(id)?.resolve(undefined);
      });
    });
  }

  /** A request is answered, failed or given up: it waits no more. */
  #settled(id: string, p: Pending): void {
    if (this.#pending.get(id) === p) this.#pending.delete(id);
    if (p.onAbort) p.signal!.removeEventListener('abort', p.onAbort);
  }

  /** (Re)arms the deadline timer for `at` (performance.now()). */
  #armDeadlines(at: number): void {
    clearTimeout(this.#deadlines);
    this.#deadlinesAt = at;
    this.#deadlines = setTimeout(() => this.#expire(), Math.max(0, at - performance.now()));
    // The socket keeps the process up while requests wait; a stale deadline must not.
    this.#deadlines.unref();
  }

  /** Fails the requests past their deadlines, then re-arms for the earliest left. */
  #expire(): void {
    this.#deadlines = undefined;
    this.#deadlinesAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const p of [...this.#pending.values()]) {
      if (p.deadline <= now) p.reject(new TransportError('timeout', 'timed out'));
      else if (p.deadline < next) next = p.deadline;
    }
    if (next < Infinity) this.#armDeadlines(next);
  }

  /**
   * Sends one text frame. The frames of one turn of the event loop (the reports of runs woken
   * together by one batch of replies) leave in one `writev` (`corkForTurn`), not a syscall each.
   */
  #sendText(ws: WebSocket, text: string, cb?: (e?: Error) => void): void {
    if (this.#raw && this.#ws === ws) corkForTurn(this.#raw);
    ws.send(text, cb);
  }

  /** Connects and reconnects until `signal` aborts; resolves then (or after a fatal refusal). */
  async run(signal: AbortSignal): Promise<void> {
    const random = this.opts.random ?? Math.random;
    if (!(await sleep(Math.round(random() * (this.opts.startJitterMs ?? LINK_START_JITTER_MS)), signal)))
      return;
    let attempt = 0;
    /** A "link down" line was written since the link was last up. */
    let noted = false;
    while (!signal.aborted) {
      const result = await this.#connectOnce(signal);
      if (signal.aborted) return;
      this.opts.onAttempt?.(result.url, result.opened);
      if (
        result.httpStatus === 401 ||
        result.httpStatus === 403 ||
        result.code === LINK_CLOSE_CODES.revoked
      ) {
        this.opts.onFatal(
          new AgentError(
            'unauthorized',
            `the control plane refused this workstation's credential on the link (${result.httpStatus ?? result.code}): revoked? pair again`,
          ),
        );
        return;
      }
      attempt = result.opened ? 1 : attempt + 1;
      // Told when to come back: then, within a second, however many attempts it took (the
      // control plane paces its queue; a backoff draw on top would leave it idle while agents wait).
      let delay =
        result.retryAfterMs !== undefined
          ? result.retryAfterMs + Math.round(random() * LINK_RETRY_AFTER_SPREAD_MS)
          : backoffDelay(attempt, {
              baseMs: 500,
              capMs: this.opts.maxBackoffMs ?? LINK_BACKOFF_CAP_MS,
              jitter: 'full',
              random,
            });
      // Another agent took over this workstation's link: do not fight it in a tight loop.
      if (result.code === LINK_CLOSE_CODES.replaced)
        delay = Math.max(delay, backoffDelay(1, { baseMs: 10_000, capMs: 30_000, random }));
      const detail = {
        code: result.code,
        http_status: result.httpStatus,
        reason: result.reason,
        retry_in_ms: delay,
      };
      if (result.opened) noted = false;
      // Shed with a time: the control plane is up and will take this link back then (docs/agent.md).
      if (!result.opened)
        this.opts.onHold?.(
          result.retryAfterMs === undefined
            ? undefined
            : Math.min(
                LINK_SHED_HOLD_MAX_MS,
                delay + (this.opts.handshakeTimeoutMs ?? LINK_HANDSHAKE_TIMEOUT_MS),
              ),
        );
      // A 503 with a `Retry-After` is an answer (a place in a queue), not an outage.
      const outage =
        !result.opened &&
        (result.httpStatus === undefined ||
          (GATEWAY_STATUSES.has(result.httpStatus) && result.retryAfterMs === undefined));
      // A person reads one line per change, not one per retry: an outage is the reachability's
      // line; a link that dropped is told by the next attempt (an outage, or nothing when it
      // comes straight back); a link refused for another reason (a proxy without WebSocket
      // upgrades, a replaced link) is told once until it is up again.
      if (outage && this.opts.reach) {
        const reason = result.errorCode ?? result.reason ?? 'no answer';
        this.opts.reach.unreachable(result.url, reason, 'link', { startedAt: result.startedAt });
        this.opts.logger.debug(detail, 'link down; reconnecting');
        if (!(await sleep(delay, signal))) return;
        continue;
      }
      if (!result.opened) this.opts.reach?.reached(); // it answered, if not with a link
      if (noted || (result.opened && DROP_CODES.has(result.code ?? 0))) {
        this.opts.logger.debug(detail, 'link down; reconnecting');
      } else {
        noted = true;
        this.opts.logger.info(detail, 'link down; reconnecting');
      }
      if (!(await sleep(delay, signal))) return;
    }
  }

  #connectOnce(signal: AbortSignal): Promise<AttemptResult> {
    const base = typeof this.opts.url === 'function' ? this.opts.url() : this.opts.url;
    const url = `${base.replace(/^http/, 'ws').replace(/\/+$/, '')}/api/agent/link`;
    return new Promise<AttemptResult>((resolve) => {
      const result: AttemptResult = { url: base, startedAt: performance.now(), opened: false };
      const ws = new WebSocket(url, {
        headers: { authorization: `Bearer ${this.opts.token()}` },
        handshakeTimeout: this.opts.handshakeTimeoutMs ?? LINK_HANDSHAKE_TIMEOUT_MS,
        ...(this.opts.localAddress === undefined ? {} : { localAddress: this.opts.localAddress }),
      });
      this.#ws = ws;
      this.#raw = undefined;
      this.#ops = undefined;
      let alive = true;
      let pinger: NodeJS.Timeout | undefined;
      const onAbort = () => ws.close(1000, 'agent stopping');
      signal.addEventListener('abort', onAbort, { once: true });
      const finish = () => {
        clearInterval(pinger);
        signal.removeEventListener('abort', onAbort);
        if (this.#ws === ws) {
          this.#ws = undefined;
          this.#raw = undefined;
        }
        // Requests this socket will never answer: their callers go over HTTP (or the next link).
        for (const p of [...this.#pending.values()]) p.resolve(undefined);
        if (this.#up) {
          this.#up = false;
          this.opts.onUp(false);
        }
        resolve(result);
      };
      // The upgraded TCP socket (what `ws` writes frames to).
      ws.on('upgrade', (res) => {
        if (this.#ws === ws) this.#raw = res.socket;
      });
      ws.on('unexpected-response', (_req, res) => {
        result.httpStatus = res.statusCode;
        result.retryAfterMs = parseRetryAfter(res.headers['retry-after']);
        result.reason = `upgrade answered ${res.statusCode}`;
        res.resume();
        ws.terminate();
      });
      ws.on('open', () => {
        result.opened = true;
        this.opts.reach?.reached();
        this.#sendText(ws, JSON.stringify(this.opts.register()));
        this.#up = true;
        this.opts.onUp(true);
        pinger = setInterval(() => {
          if (!alive) return ws.terminate();
          alive = false;
          ws.ping();
        }, this.opts.pingIntervalMs ?? 15_000);
        pinger.unref();
      });
      ws.on('pong', () => {
        alive = true;
      });
      ws.on('message', (data) => {
        alive = true;
        let json: unknown;
        try {
          json = JSON.parse(rawText(data));
        } catch {
          return this.opts.logger.warn('link: a message that is not JSON; ignored');
        }
        // Replies (two or more a run) are checked by hand, exactly as their schema would: their
        // `result` is validated above the transport, by the call it answers (issue 9 profile).
        const reply = replyOf(json);
        if (reply) return this.#pending.get(reply.id)?.resolve(reply);
        // `offer-claimed` (one a run or a batch of runs) is checked by a fast path in front of its schema.
        const parsed = parseControlMessage(json);
        if (!parsed.success)
          return this.opts.logger.warn(
            { type: (json as { type?: unknown })?.type },
            'link: an unknown or invalid message; ignored',
          );
        if (parsed.data.type === 'reply') return this.#pending.get(parsed.data.id)?.resolve(parsed.data);
        if (parsed.data.type === 'registered' && this.#ws === ws) this.#ops = new Set(parsed.data.ops ?? []);
        if (tracing && parsed.data.type === 'offer-claimed')
          traceMark(
            'agent.offer',
            parsed.data.runs.map((c) => c.run.id),
          );
        this.opts.onMessage(parsed.data);
      });
      ws.on('error', (e) => {
        result.reason ??= e.message;
        result.errorCode ??= (e as NodeJS.ErrnoException).code;
      });
      ws.on('close', (code, reason) => {
        result.code = code;
        if (reason.length > 0) result.reason = reason.toString();
        finish();
      });
    });
  }
}

const isInt = (x: unknown): x is number => Number.isInteger(x);

/**
 * `json` as a valid `reply` message (what `controlReplyMessageSchema` accepts, unknown keys
 * dropped as it drops them), or `undefined` when it is not one (any other type goes through the
 * schema; an invalid reply too, to be logged as such).
 */
export function replyOf(json: unknown): ControlReplyMessage | undefined {
  if (typeof json !== 'object' || json === null) return undefined;
  const m = json as Record<string, unknown>;
  if (m.type !== 'reply' || typeof m.id !== 'string') return undefined;
  const { status, error, retry_after_s: retryAfter } = m;
  if (!isInt(status) || status < 100 || status > 599) return undefined;
  if (retryAfter !== undefined && !(isInt(retryAfter) && retryAfter >= 0)) return undefined;
  const reply: ControlReplyMessage = { type: 'reply', id: m.id, status };
  if (m.result !== undefined) reply.result = m.result;
  if (error !== undefined) {
    if (typeof error !== 'object' || error === null) return undefined;
    const e = error as Record<string, unknown>;
    if (typeof e.code !== 'string' || typeof e.message !== 'string') return undefined;
    reply.error = { code: e.code, message: e.message };
    if (e.details !== undefined) reply.error.details = e.details;
  }
  if (retryAfter !== undefined) reply.retry_after_s = retryAfter;
  return reply;
}

/** A ws message as text (ws hands over a Buffer, an ArrayBuffer or fragments). */
function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.from(data).toString('utf8');
}
