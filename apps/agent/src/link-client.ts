import WebSocket, { type RawData } from 'ws';
import type { Logger } from 'pino';
import {
  backoffDelay,
  controlMessageSchema,
  LINK_CLOSE_CODES,
  sleep,
  type AgentMessage,
  type ControlMessage,
} from '@runt/protocol';
import { AgentError } from './agent-error.js';

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
  logger: Logger;
  /** WebSocket ping period; a link that misses two pongs is torn down (default 15 s). */
  pingIntervalMs?: number;
  /** Backoff ceiling between reconnects (default 30 s). */
  maxBackoffMs?: number;
}

interface AttemptResult {
  url: string;
  opened: boolean;
  code?: number;
  httpStatus?: number;
  reason?: string;
}

/**
 * The agent's end of the persistent link: dials `GET /api/agent/link` with the workstation
 * token in the upgrade's `Authorization` header, sends `register`, hands every validated
 * control message to `onMessage`, and reconnects with exponential backoff plus jitter when the
 * link drops (a revoked or refused credential ends the loop through `onFatal`). The link only
 * delivers; losing it costs latency, so the agent polls while it is down.
 *
 * @example
 * const link = new LinkClient({ url, token: () => token, register, onMessage, onUp, onFatal, logger });
 * void link.run(signal);
 * link.send({ type: 'heartbeat', running_run_ids: [] });
 */
export class LinkClient {
  #ws: WebSocket | undefined;
  #up = false;

  constructor(private readonly opts: LinkClientOptions) {}

  /** True while a link is open. */
  get up(): boolean {
    return this.#up;
  }

  /** Sends a message when the link is open; `false` when it is down (the caller falls back to HTTP). */
  send(message: AgentMessage): boolean {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  /** Connects and reconnects until `signal` aborts; resolves then (or after a fatal refusal). */
  async run(signal: AbortSignal): Promise<void> {
    let attempt = 0;
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
      let delay = backoffDelay(attempt, { baseMs: 500, capMs: this.opts.maxBackoffMs ?? 30_000 });
      // Another agent took over this workstation's link: do not fight it in a tight loop.
      if (result.code === LINK_CLOSE_CODES.replaced)
        delay = Math.max(delay, backoffDelay(1, { baseMs: 10_000, capMs: 30_000 }));
      this.opts.logger.info(
        { code: result.code, http_status: result.httpStatus, reason: result.reason, retry_in_ms: delay },
        'link down; polling until it is back',
      );
      if (!(await sleep(delay, signal))) return;
    }
  }

  #connectOnce(signal: AbortSignal): Promise<AttemptResult> {
    const base = typeof this.opts.url === 'function' ? this.opts.url() : this.opts.url;
    const url = `${base.replace(/^http/, 'ws').replace(/\/+$/, '')}/api/agent/link`;
    return new Promise<AttemptResult>((resolve) => {
      const result: AttemptResult = { url: base, opened: false };
      const ws = new WebSocket(url, {
        headers: { authorization: `Bearer ${this.opts.token()}` },
        handshakeTimeout: 10_000,
      });
      this.#ws = ws;
      let alive = true;
      let pinger: NodeJS.Timeout | undefined;
      const onAbort = () => ws.close(1000, 'agent stopping');
      signal.addEventListener('abort', onAbort, { once: true });
      const finish = () => {
        clearInterval(pinger);
        signal.removeEventListener('abort', onAbort);
        if (this.#ws === ws) this.#ws = undefined;
        if (this.#up) {
          this.#up = false;
          this.opts.onUp(false);
        }
        resolve(result);
      };
      ws.on('unexpected-response', (_req, res) => {
        result.httpStatus = res.statusCode;
        result.reason = `upgrade answered ${res.statusCode}`;
        res.resume();
        ws.terminate();
      });
      ws.on('open', () => {
        result.opened = true;
        ws.send(JSON.stringify(this.opts.register()));
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
        const parsed = controlMessageSchema.safeParse(json);
        if (!parsed.success)
          return this.opts.logger.warn(
            { type: (json as { type?: unknown })?.type },
            'link: an unknown or invalid message; ignored',
          );
        this.opts.onMessage(parsed.data);
      });
      ws.on('error', (e) => {
        result.reason ??= e.message;
      });
      ws.on('close', (code, reason) => {
        result.code = code;
        if (reason.length > 0) result.reason = reason.toString();
        finish();
      });
    });
  }
}

/** A ws message as text (ws hands over a Buffer, an ArrayBuffer or fragments). */
function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.from(data).toString('utf8');
}
