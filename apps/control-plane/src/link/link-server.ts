import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { Logger } from 'pino';
import {
  findUnsafeJson,
  jsonNestsDeeperThan,
  jsonTextIsSafe,
  LINK_CLOSE_CODES,
  LINK_OP_REQUEST_SCHEMAS,
  LINK_OPS,
  LINK_REQUESTS_FORM,
  linkRequestBodyOf,
  MAX_LINK_BATCH_BYTES,
  parseAgentMessage,
  STATUS_STARTED_FORM,
  type AgentMessage,
  type AgentRequestMessage,
  type ControlReplyMessage,
  type Corkable,
} from '@runt/protocol';
import { hashToken, parseToken, type PrincipalResolver } from '@runt/transport-auth';
import { validate } from '../body.js';
import { toHttpError } from '../errors.js';
import { linkMetrics } from '../metrics.js';
import { agentOps, type AgentOps } from '../runs/agent-ops.js';
import { slotsOf } from '../runs/placement.js';
import type { RunSignals } from '../runs/run-signals.js';
import type { RunLifecycle } from '../runs/run-lifecycle.js';
import type { RunStore } from '../runs/run-store.js';
import type { CredentialStore } from '../stores/credential-store.js';
import type { WorkstationStore } from '../stores/workstation-store.js';
import { sendText, type AgentLink, type LinkRegistry } from './link-registry.js';
import { LinkRegistrations } from './link-registrations.js';
import { ShedPacer } from './link-pacer.js';

export interface LinkServerOptions {
  server: Server;
  registry: LinkRegistry;
  resolve: PrincipalResolver;
  workstations: WorkstationStore;
  credentials: CredentialStore;
  runs: RunStore;
  lifecycle: RunLifecycle;
  signals: RunSignals;
  logger: Logger;
  replicaId: string;
  pingMs: number;
  /** Largest message accepted from an agent (default 1 MiB). */
  maxPayloadBytes?: number;
  /**
   * Links opening at once at most (default {@link LINK_MAX_OPENING}): from the upgrade request to
   * the link's `registered` (or its end). Past it an upgrade is answered `503` at once — no
   * credential lookup, no handshake — with a `Retry-After` that gives the agent its own place in a
   * queue drained at the pace links open here ({@link ShedPacer}), so a fleet dialling faster
   * than this process can open links never queues it past the agents' handshake timeout (work
   * for sockets nobody reads) and comes back about as fast as links open.
   */
  maxOpening?: number;
  /**
   * The pace (links/s) shed upgrades are told to come back at before this process has measured
   * its own, and at least in its first `shedFloorMs` (default `LINK_SHED_PACE_PER_SECOND`); see
   * {@link ShedPacer}.
   */
  shedPacePerSecond?: number;
  /** How long after the start the shed pace is at least `shedPacePerSecond` (ms, default `LINK_SHED_FLOOR_MS`). */
  shedFloorMs?: number;
  /**
   * Upgrades past `maxOpening` held unanswered, in arrival order, until a place frees (default
   * {@link LINK_MAX_WAITING}); only past this many is an upgrade shed at once. 0: shed at once.
   */
  maxWaiting?: number;
  /**
   * How long an upgrade may wait for a place (ms, default {@link LINK_WAIT_MAX_MS}); past it it is
   * shed (`503` with its `Retry-After`), well before the agent's own handshake timeout (10 s).
   */
  waitMaxMs?: number;
  /**
   * A link counts among those opening (`maxOpening`) for at most this long (ms, default
   * {@link LINK_OPENING_MAX_MS}) when its `register` does not come: a client that upgrades and
   * then stays silent (slow, stuck, or a double starved of CPU) no longer holds its place until
   * its socket ends — the 256 places of then were all held by such links, and every other agent
   * was shed for as long as they stayed.
   */
  openingMaxMs?: number;
  /**
   * Messages one link may send, in two token buckets; past either the link is closed with
   * `LINK_CLOSE_CODES.rateLimited`, so one token cannot flood the database behind it.
   * Control messages (`register`, `heartbeat`, `result`): a bucket of `burst` (default 200)
   * refilled at `perSecond` (default 20; an agent sends a few a minute). Requests (the fenced
   * run calls, one token each, a `requests` frame one per request in it): a bucket sized by the slots the workstation registered on
   * this link (`max_runs`, else `cpu_count`, at least 1, plus its `prefetch`), `requestBurstPerSlot` (default 400)
   * per slot, refilled at `requestsPerSlotPerSecond` (default 200) per slot — several times what
   * a slot running back-to-back no-op runs sends (claim, running, terminal, an events flush and
   * a renewal per run), so a busy agent is never throttled. A `requests` frame of more requests
   * than the whole request bucket (a budget set below a frame's size) is served up to what the
   * bucket holds and the rest answered `429` each, with its `retry_after_s`. See docs/runs.md,
   * "Lease calls over the link".
   */
  messageRate?: {
    perSecond: number;
    burst: number;
    requestsPerSlotPerSecond?: number;
    requestBurstPerSlot?: number;
  };
}

/** Token buckets per link: control messages, and requests (sized by `slots`). */
interface Budget {
  tokens: number;
  at: number;
  requestTokens: number;
  requestAt: number;
  /** Slots the workstation registered on this link (1 until it registers). */
  slots: number;
}

/** A workstation registering more slots than this gets the request budget of this many. */
const MAX_BUDGET_SLOTS = 1024;

/**
 * Default bound on links opening at once (see `LinkServerOptions.maxOpening`). A place is held
 * from the upgrade to the link's `registered`: at least one round trip to the agent (the `101`
 * out, its `register` back) and a registration batch. So the bound divided by that time is the
 * most links a second this process opens: 256 places held 250 ms — agents ~200 ms away, or the
 * bench's doubles, starved on a shared machine — were 1,000 a second at best, the issue's target
 * with no margin (issue 9: first open of 5,000 at 121–155 links/s with 256, 905/s with 1,024,
 * the control plane idle meanwhile). 1,024 opening at once cost a few MiB and at most ~0.5 s of
 * upgrade work queued here, far under the agents' 10 s handshake timeout.
 */
export const LINK_MAX_OPENING = 1024;

/**
 * Default `LinkServerOptions.maxWaiting`: upgrades held for a place rather than shed at once. A
 * shed costs both ends a TCP connect, an HTTP exchange and a retry later, and a restart shed every
 * agent past the first cohort (19,800 agents, 22,000–37,000 failed attempts, issue 9); held, an
 * agent connects once and is let in as soon as a place frees — at the pace links really open,
 * with nothing to estimate. 4,096 held at 1,000 links a second is ~4 s of queue; each costs a
 * socket and its parsed request (a few KiB).
 */
export const LINK_MAX_WAITING = 4096;

/** Default `LinkServerOptions.waitMaxMs`: under a third of the agent's handshake timeout (10 s). */
export const LINK_WAIT_MAX_MS = 3_000;

/** Default `LinkServerOptions.openingMaxMs`: the agent's own handshake timeout (10 s). */
export const LINK_OPENING_MAX_MS = 10_000;

/** Where agents dial in. */
export const AGENT_LINK_PATH = '/api/agent/link';

const BEARER = /^Bearer +([^\s]+) *$/i;

/** One listener for the errors a link's sockets may emit (their end is handled on `close`), shared by every link. */
const ignore = (): void => {};
/** Every link op (and op form) this control plane serves, told to the agent in `registered` (ops beyond `BASE_LINK_OPS` are sent only when listed). */
const SERVED_OPS = [...Object.keys(LINK_OPS), STATUS_STARTED_FORM, LINK_REQUESTS_FORM];

/**
 * The agent link: WebSockets upgraded straight from the Node server's `upgrade` event with
 * `ws` (no per-link framework objects; a few KB per idle link). The workstation token in the
 * `Authorization` header is checked before upgrading (401/403 otherwise). Messages are JSON,
 * validated with the protocol's zod schemas (the plain requests of every run by their
 * precomputed equivalent, `parseAgentMessage`/`linkRequestBodyOf`); an invalid one closes the link with
 * `LINK_CLOSE_CODES.invalid`. A second link of a workstation replaces the first; a dropped link
 * marks its workstation offline at once. One timer pings every link: a link silent for a whole
 * round is terminated, live links refresh `last_seen_at` in one statement, and links whose
 * credential was revoked (also by another replica) are closed.
 *
 * @example
 * const links = new LinkServer({ server, registry, resolve, workstations, runs, signals, logger, replicaId, pingMs: 25_000 });
 * links.start(); await links.close();
 */
export class LinkServer {
  private readonly wss: WebSocketServer;
  private timer: NodeJS.Timeout | undefined;
  private closing = false;
  private readonly pending = new Set<Promise<unknown>>();
  private readonly budgets = new WeakMap<AgentLink, Budget>();
  /** Upgrades between the request and their link's `registered` (or their end). */
  private opening = 0;
  /** Upgrades past the bound waiting for a place, oldest first (see `LinkServerOptions.maxWaiting`). */
  private waiting: Array<{ req: IncomingMessage; socket: Duplex; head: Buffer; at: number }> = [];
  /** Sheds the upgrades that waited too long while some wait. */
  private waitTimer: NodeJS.Timeout | undefined;
  /** Ends a link's share of `opening` once it has registered. */
  private readonly opened = new WeakMap<AgentLink, () => void>();
  private readonly ops: AgentOps;
  private readonly registrations: LinkRegistrations;
  private readonly pacer: ShedPacer;
  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) =>
    void this.upgrade(req, socket, head);

  constructor(private readonly o: LinkServerOptions) {
    this.ops = agentOps(o.lifecycle);
    this.pacer = new ShedPacer(
      o.maxOpening ?? LINK_MAX_OPENING,
      o.shedPacePerSecond,
      Math.random,
      o.shedFloorMs,
    );
    // One scheduling pass for the listening registrations of a window, not one per link.
    this.registrations = new LinkRegistrations({ ...o, schedule: () => o.signals.schedule() });
    this.wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: o.maxPayloadBytes ?? 1024 * 1024,
      clientTracking: false,
    });
  }

  /** Listens for upgrades and starts the ping round. */
  start(): void {
    this.o.server.on('upgrade', this.onUpgrade);
    this.timer = setInterval(() => this.track(this.pingRound()), this.o.pingMs);
    this.timer.unref();
  }

  /** Number of open links. */
  get size(): number {
    return this.o.registry.size;
  }

  /**
   * Closes every link with 1001 (agents reconnect elsewhere or later), waits for their close
   * handling, and stops listening for upgrades. Idempotent.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.timer);
    this.registrations.close();
    this.o.server.off('upgrade', this.onUpgrade);
    clearInterval(this.waitTimer);
    for (const w of this.waiting.splice(0)) refuse(w.socket, 503, 'unavailable', 'shutting down');
    const links = [...this.o.registry.all()];
    await Promise.all(
      links.map(
        (l) =>
          new Promise<void>((resolve) => {
            if (l.socket.readyState === 3) return resolve();
            const force = setTimeout(() => l.socket.terminate(), 1000);
            l.socket.once('close', () => {
              clearTimeout(force);
              resolve();
            });
            l.socket.close(LINK_CLOSE_CODES.shutdown, 'control plane shutting down');
          }),
      ),
    );
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
    await new Promise<void>((r) => this.wss.close(() => r()));
  }

  private track<T>(p: Promise<T>): void {
    const tracked = p
      .catch((e: unknown) => this.o.logger.warn({ err: (e as Error).message }, 'agent link task failed'))
      .finally(() => this.pending.delete(tracked));
    this.pending.add(tracked);
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', ignore);
    const path = (req.url ?? '').split('?')[0];
    if (path !== AGENT_LINK_PATH) return refuse(socket, 404, 'not-found', `no route for GET ${path}`);
    if (this.closing) return refuse(socket, 503, 'unavailable', 'shutting down');
    if (this.opening >= (this.o.maxOpening ?? LINK_MAX_OPENING)) {
      if (this.waiting.length >= (this.o.maxWaiting ?? LINK_MAX_WAITING)) return this.shed(socket);
      this.waiting.push({ req, socket, head, at: performance.now() });
      if (!this.waitTimer) {
        this.waitTimer = setInterval(() => this.shedLate(), 100);
        this.waitTimer.unref();
      }
      return;
    }
    return this.admit(req, socket, head);
  }

  /** Answers `503` with the shed upgrade's place in the pacer's queue. */
  private shed(socket: Duplex): void {
    linkMetrics.upgradesShed.inc();
    refuse(socket, 503, 'unavailable', 'too many links opening; retry later', this.pacer.retryAfterS());
  }

  /** A place freed: the upgrades waiting for one, oldest first, while places are free. */
  private admitWaiting(): void {
    this.shedLate();
    while (this.waiting.length > 0 && this.opening < (this.o.maxOpening ?? LINK_MAX_OPENING)) {
      const w = this.waiting.shift()!;
      if (!w.socket.destroyed) void this.admit(w.req, w.socket, w.head);
    }
  }

  /** Sheds the waiting upgrades older than `waitMaxMs`, and forgets those whose client left. */
  private shedLate(): void {
    const oldest = performance.now() - (this.o.waitMaxMs ?? LINK_WAIT_MAX_MS);
    while (this.waiting.length > 0 && (this.waiting[0]!.socket.destroyed || this.waiting[0]!.at <= oldest)) {
      const w = this.waiting.shift()!;
      if (!w.socket.destroyed) this.shed(w.socket);
    }
    if (this.waiting.length === 0 && this.waitTimer) {
      clearInterval(this.waitTimer);
      this.waitTimer = undefined;
    }
  }

  private async admit(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    if (this.closing) return refuse(socket, 503, 'unavailable', 'shutting down');
    this.opening++;
    const since = performance.now();
    let counted = true;
    const done = () => {
      if (!counted) return;
      counted = false;
      clearTimeout(late);
      // Nothing of the opening stays with an open link (this closure, its timer: ~0.3 KiB a link).
      socket.removeListener('close', done);
      this.opening--;
      // How long the place was held: the pace shed upgrades are told to come back at.
      this.pacer.freed(performance.now() - since);
      if (this.waiting.length > 0) this.admitWaiting();
    };
    // Registered, refused, dropped, or silent past openingMaxMs: its share ends then.
    const late = setTimeout(done, this.o.openingMaxMs ?? LINK_OPENING_MAX_MS);
    late.unref();
    socket.once('close', done);
    return this.open(req, socket, head, done);
  }

  private async open(req: IncomingMessage, socket: Duplex, head: Buffer, done: () => void): Promise<void> {
    const token = BEARER.exec(req.headers.authorization ?? '')?.[1];
    const parsed = token ? parseToken(token) : undefined;
    if (!token || !parsed) return refuse(socket, 401, 'unauthorized', 'missing or malformed bearer token');
    let principal;
    try {
      principal = await this.o.resolve(hashToken(token), parsed.kind);
    } catch (e) {
      this.o.logger.warn({ err: (e as Error).message }, 'agent link auth failed');
      return refuse(socket, 503, 'unavailable', 'cannot check the credential now');
    }
    if (!principal) return refuse(socket, 401, 'unauthorized', 'invalid or revoked token');
    if (principal.kind !== 'workstation' || !principal.workstationId)
      return refuse(socket, 403, 'forbidden', 'the agent link takes a workstation token');
    if (this.closing || socket.destroyed) return refuse(socket, 503, 'unavailable', 'shutting down');
    const { workstationId, id: credentialId } = principal;
    this.wss.handleUpgrade(req, socket, head, (ws) =>
      this.accept(ws, socket, workstationId, credentialId, done),
    );
  }

  private accept(
    socket: WebSocket,
    raw: Corkable,
    workstationId: string,
    credentialId: string,
    done: () => void,
  ): void {
    const link: AgentLink = {
      socket,
      raw,
      workstationId,
      credentialId,
      alive: true,
      registered: false,
      chain: Promise.resolve(),
    };
    this.opened.set(link, done);
    const old = this.o.registry.add(link);
    if (old) old.socket.close(LINK_CLOSE_CODES.replaced, 'replaced by a newer link');
    socket.on('message', (data, isBinary) => this.onMessage(link, data, isBinary));
    socket.on('pong', () => (link.alive = true));
    socket.on('error', ignore);
    socket.on('close', () => {
      if (!this.o.registry.remove(link)) return; // replaced: the newer link owns the row
      // After the link's queued messages, so a late `register` cannot mark it online again.
      this.track(link.chain.then(() => this.o.workstations.linkDropped(workstationId, this.o.replicaId)));
      this.o.logger.info({ workstation_id: workstationId }, 'agent link closed');
    });
    this.o.logger.info({ workstation_id: workstationId, replaced: Boolean(old) }, 'agent link open');
  }

  private onMessage(link: AgentLink, data: RawData, isBinary: boolean): void {
    // Any message is a sign of life (a request too): the ping round keeps the link and
    // refreshes the workstation's `last_seen_at`.
    link.alive = true;
    let msg: AgentMessage | undefined;
    let bytes = 0;
    if (!isBinary) {
      try {
        // The same edge checks as HTTP bodies: bounded nesting, no NUL or lone surrogate anywhere.
        const buf = Array.isArray(data)
          ? Buffer.concat(data)
          : Buffer.isBuffer(data)
            ? data
            : Buffer.from(data);
        bytes = buf.length;
        // A `requests` frame over its bound is refused on its size, before any parse (below).
        if (bytes > MAX_LINK_BATCH_BYTES && opensRequestsFrame(buf)) {
          this.refuseOversize(link, bytes);
          return;
        }
        const text = buf.toString('utf8');
        const value: unknown = jsonNestsDeeperThan(text) ? undefined : JSON.parse(text);
        // The value walk only when the text could hide a NUL or lone surrogate (see jsonTextIsSafe).
        // `agentMessageSchema`, a plain `request` checked without it (parseAgentMessage).
        const parsed =
          value === undefined || (!jsonTextIsSafe(text) && findUnsafeJson(value))
            ? undefined
            : parseAgentMessage(value);
        if (parsed?.success) msg = parsed.data;
      } catch {
        msg = undefined;
      }
    }
    // A frame whose `type` is not its first key, found over its bound only once parsed.
    if (msg?.type === 'requests' && bytes > MAX_LINK_BATCH_BYTES) {
      this.refuseOversize(link, bytes);
      return;
    }
    if (!msg) {
      linkMetrics.messages.inc({ type: 'invalid' });
      link.socket.close(LINK_CLOSE_CODES.invalid, 'invalid message');
      return;
    }
    linkMetrics.messages.inc({ type: msg.type });
    // A frame of requests costs what its requests would cost alone: batching cannot outrun the budget.
    const requests = msg.type === 'request' ? 1 : msg.type === 'requests' ? msg.requests.length : 0;
    const granted = this.spend(link, requests);
    if (granted === 0) {
      if (link.socket.readyState === link.socket.OPEN) {
        this.o.logger.warn(
          { workstation_id: link.workstationId, requests },
          'agent link over its message rate: closed',
        );
        link.socket.close(LINK_CLOSE_CODES.rateLimited, 'too many messages');
      }
      return;
    }
    if (msg.type === 'request') {
      // Not on the link's chain: requests are independent (each fenced, like concurrent HTTP
      // calls), so a renewal never waits behind a slow report or a `register`.
      this.track(this.serve(link, msg));
      return;
    }
    if (msg.type === 'requests') {
      this.track(this.serveFrame(link, msg.requests, granted));
      return;
    }
    const m = msg;
    link.chain = link.chain
      .then(() => this.handle(link, m))
      .catch((e: unknown) => {
        this.o.logger.warn(
          { workstation_id: link.workstationId, err: (e as Error).message },
          'agent link message failed',
        );
      });
  }

  /**
   * Takes one message from the link's budget (1, or 0 when it is spent), or, for a message of
   * `requests` (> 0) requests, that many from the request budget: all of them, or 0 when it holds
   * fewer. A frame of more requests than the whole bucket (a budget configured below a frame's
   * size) could never pass so: it takes what the bucket holds, the rest of it answered 429
   * ({@link serveFrame}); 0 only when the bucket holds less than one request, where a lone
   * request is refused too.
   */
  private spend(link: AgentLink, requests: number): number {
    const budget = this.budget(link);
    const now = performance.now();
    if (requests > 0) {
      const { perSecond, burst } = this.requestRate(budget.slots);
      budget.requestTokens = Math.min(
        burst,
        budget.requestTokens + ((now - budget.requestAt) / 1000) * perSecond,
      );
      budget.requestAt = now;
      const granted =
        budget.requestTokens >= requests ? requests : requests > burst ? Math.floor(budget.requestTokens) : 0;
      budget.requestTokens -= granted;
      return granted;
    }
    const { perSecond, burst } = this.o.messageRate ?? { perSecond: 20, burst: 200 };
    budget.tokens = Math.min(burst, budget.tokens + ((now - budget.at) / 1000) * perSecond);
    budget.at = now;
    if (budget.tokens < 1) return 0;
    budget.tokens -= 1;
    return 1;
  }

  /**
   * The `Retry-After` (whole seconds, ≥ 1) of each of `refused` requests the link's request budget
   * could not take now: the time its token is back, at the bucket's pace but never more a second
   * than the bucket holds, so the refused ones, retried alone, come back spread out and fit.
   */
  private retryAfterS(link: AgentLink, refused: number): number[] {
    const budget = this.budget(link);
    const { perSecond, burst } = this.requestRate(budget.slots);
    const pace = Math.min(perSecond, burst);
    return Array.from({ length: refused }, (_, i) =>
      Math.max(1, Math.ceil((i + 1 - budget.requestTokens) / pace)),
    );
  }

  /** A `requests` frame over {@link MAX_LINK_BATCH_BYTES}: the link is closed as invalid. */
  private refuseOversize(link: AgentLink, bytes: number): void {
    linkMetrics.messages.inc({ type: 'invalid' });
    this.o.logger.warn(
      { workstation_id: link.workstationId, bytes },
      'agent link sent an oversize frame: closed',
    );
    link.socket.close(LINK_CLOSE_CODES.invalid, `requests frame over ${MAX_LINK_BATCH_BYTES} bytes`);
  }

  private budget(link: AgentLink): Budget {
    let budget = this.budgets.get(link);
    if (!budget) {
      const now = performance.now();
      budget = {
        tokens: this.o.messageRate?.burst ?? 200,
        at: now,
        requestTokens: this.requestRate(1).burst,
        requestAt: now,
        slots: 1,
      };
      this.budgets.set(link, budget);
    }
    return budget;
  }

  /** The workstation registered `slots` on this link: its request bucket grows (or shrinks) with them. */
  private resize(link: AgentLink, slots: number | undefined): void {
    const budget = this.budget(link);
    const next = Math.min(MAX_BUDGET_SLOTS, Math.max(1, slots ?? 1));
    const grown = this.requestRate(next).burst - this.requestRate(budget.slots).burst;
    budget.requestTokens = Math.max(0, budget.requestTokens + grown);
    budget.slots = next;
  }

  private requestRate(slots: number): { perSecond: number; burst: number } {
    const r = this.o.messageRate;
    return {
      perSecond: (r?.requestsPerSlotPerSecond ?? 200) * slots,
      burst: (r?.requestBurstPerSlot ?? 400) * slots,
    };
  }

  /** Answers one request (see {@link answer}) with one `reply`. */
  private async serve(link: AgentLink, msg: AgentRequestMessage): Promise<void> {
    const reply = await this.answer(link, msg);
    // A link that dropped meanwhile loses the answer: the agent asks again (HTTP or a new link).
    if (link.socket.readyState === link.socket.OPEN) sendText(link, JSON.stringify(reply));
  }

  /**
   * Answers a `requests` frame with one `replies` message: every request served at once, as if
   * each had come alone (so the reports of a frame meet in the same group commit, each fenced by
   * its own token and answered on its own: a stale one gets its 409 and the others their 200),
   * their replies in the frame's order.
   */
  private async serveFrame(
    link: AgentLink,
    requests: Array<Omit<AgentRequestMessage, 'type'>>,
    served: number,
  ): Promise<void> {
    // Past what the link's budget took (a frame larger than the whole bucket, see `spend`): each
    // request refused as it would be over HTTP, 429 with its own Retry-After.
    const later = this.retryAfterS(link, requests.length - served);
    const replies = await Promise.all(
      requests.map((r, i) =>
        i < served ? this.answer(link, r) : Promise.resolve(rateLimited(r, later[i - served]!)),
      ),
    );
    if (link.socket.readyState !== link.socket.OPEN) return;
    sendText(
      link,
      JSON.stringify({ type: 'replies', replies: replies.map(({ type: _type, ...reply }) => reply) }),
    );
  }

  /**
   * The reply to one request exactly as its HTTP endpoint would answer it (`agentOps`, the
   * endpoint's body schema, `errors.ts` for refusals), as the link's workstation.
   */
  private async answer(
    link: AgentLink,
    msg: Omit<AgentRequestMessage, 'type'>,
  ): Promise<ControlReplyMessage> {
    let reply: ControlReplyMessage;
    try {
      // The op's schema, a plain body of the ops of every run checked without it (linkRequestBodyOf).
      const body =
        linkRequestBodyOf(msg.op, msg.body) ?? validate(LINK_OP_REQUEST_SCHEMAS[msg.op], msg.body, 'body');
      const run = this.ops[msg.op] as (ws: string, target: string, body: unknown) => Promise<unknown>;
      reply = {
        type: 'reply',
        id: msg.id,
        status: 200,
        result: await run(link.workstationId, msg.target, body),
      };
    } catch (e) {
      const known = toHttpError(e);
      if (known) {
        const retryAfter = known.headers['Retry-After'];
        reply = {
          type: 'reply',
          id: msg.id,
          status: known.status,
          error: {
            code: known.code,
            message: known.message,
            ...(known.details === undefined ? {} : { details: known.details }),
          },
          ...(retryAfter ? { retry_after_s: Number(retryAfter) } : {}),
        };
      } else {
        this.o.logger.error(
          { workstation_id: link.workstationId, op: msg.op, err: (e as Error).message },
          'unhandled error in a link request',
        );
        reply = {
          type: 'reply',
          id: msg.id,
          status: 500,
          error: { code: 'internal', message: 'internal error' },
        };
      }
    }
    linkMetrics.requests.inc({ op: msg.op, status: String(reply.status) });
    return reply;
  }

  private async handle(link: AgentLink, msg: AgentMessage): Promise<void> {
    const ws = link.workstationId;
    switch (msg.type) {
      case 'register': {
        if (!this.o.registry.isCurrent(link)) return;
        // The credential's workstation is authoritative; msg.workstation_id is only a hint.
        // Claim on offer: the scheduler leases runs to this runner as it places them (issue 9).
        const claimer = msg.claim_on_offer
          ? { holder: `${ws}/${msg.claim_on_offer.runner_id}`, leaseMs: msg.claim_on_offer.lease_ms }
          : undefined;
        const registered = await this.registrations.register(ws, msg.workstation, claimer?.holder);
        link.registered = true;
        link.claimer = claimer;
        // its runs at once: the scheduler's capacity rule (its slots and the runs it takes ahead)
        this.resize(
          link,
          slotsOf({
            max_runs: msg.workstation.max_runs ?? null,
            cpu_count: msg.workstation.cpu_count,
            prefetch: msg.workstation.prefetch ?? 0,
          }),
        );
        sendText(link, JSON.stringify({ type: 'registered', workstation_id: ws, ops: SERVED_OPS }));
        // The first `register` of the link ends its share of `opening`.
        const opened = this.opened.get(link);
        if (opened) {
          this.opened.delete(link);
          opened();
        }
        // A drain requested while this agent had no link here (or one it did not act on yet).
        if (registered.draining) sendText(link, JSON.stringify({ type: 'drain' }));
        // Offers and cancels the agent may have missed while it was away.
        for (const run of registered.offered) this.o.registry.send(ws, { type: 'offer', id: run.id, run });
        // Runs claimed on offer for this same runner and not started: it may not have got them.
        if (registered.claimed.length > 0)
          this.o.registry.send(ws, { type: 'offer-claimed', runs: registered.claimed });
        // Offers (plain or claimed) a scheduling pass made while this registration was being
        // written (not sent then: the link was not registered yet) and that its reads did not see.
        this.o.registry.flushHeld(
          link,
          new Set([...registered.offered.map((r) => r.id), ...registered.claimed.map((c) => c.run.id)]),
        );
        for (const runId of registered.cancels) this.o.registry.send(ws, { type: 'cancel', run_id: runId });
        return;
      }
      case 'heartbeat':
      case 'request': // served in `onMessage`, never queued here
      case 'requests':
        return;
      case 'result':
        // A run claimed on offer handed back unstarted, fenced by its token: back to the queue.
        if (!msg.ok && msg.fencing_token !== undefined) {
          const back = await this.o.lifecycle.handBack(ws, msg.id, msg.fencing_token);
          if (back)
            this.o.logger.info(
              { workstation_id: ws, run_id: msg.id, reason: msg.error, status: back },
              back === 'queued' ? 'run handed back' : 'run handed back: cancelled (its cancel was asked)',
            );
          return;
        }
        // An offer answered `ok: false` (the agent cannot take it): back to the queue now.
        if (!msg.ok && (await this.o.lifecycle.declineOffer(ws, msg.id))) {
          this.o.logger.info({ workstation_id: ws, run_id: msg.id, reason: msg.error }, 'offer declined');
          this.o.signals.schedule();
        }
        return;
    }
  }

  private async pingRound(): Promise<void> {
    const live: string[] = [];
    const creds: string[] = [];
    for (const link of this.o.registry.all()) {
      if (!link.alive) {
        link.socket.terminate();
        continue;
      }
      link.alive = false;
      link.socket.ping();
      link.socket.send(JSON.stringify({ type: 'ping', id: randomUUID() }));
      if (link.registered) live.push(link.workstationId);
      creds.push(link.credentialId);
    }
    await this.o.workstations.touchLinked(live);
    for (const id of await this.o.credentials.revokedAmong([...new Set(creds)])) {
      this.o.registry.closeCredential(id, LINK_CLOSE_CODES.revoked, 'credential revoked');
    }
  }
}

/**
 * Whether a message's text opens as a `requests` frame (`{"type":"requests"`, white space
 * allowed: how agents write one), read off its first bytes without parsing it.
 */
function opensRequestsFrame(buf: Buffer): boolean {
  return REQUESTS_FRAME_OPENING.test(buf.toString('latin1', 0, 64));
}
const REQUESTS_FRAME_OPENING = /^\s*\{\s*"type"\s*:\s*"requests"/;

/** The reply to a request of a frame past the link's request budget: 429 `rate-limited`, and when to ask again. */
function rateLimited(r: Omit<AgentRequestMessage, 'type'>, retryAfterS: number): ControlReplyMessage {
  linkMetrics.requests.inc({ op: r.op, status: '429' });
  return {
    type: 'reply',
    id: r.id,
    status: 429,
    error: { code: 'rate-limited', message: "over the link's request budget; try again later" },
    retry_after_s: retryAfterS,
  };
}

function refuse(socket: Duplex, status: number, code: string, message: string, retryAfterS?: number): void {
  const body = JSON.stringify({ error: { code, message } });
  const reason =
    { 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 503: 'Service Unavailable' }[status] ??
    'Error';
  const auth = status === 401 ? 'WWW-Authenticate: Bearer\r\n' : '';
  const retry = retryAfterS === undefined ? '' : `Retry-After: ${retryAfterS}\r\n`;
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json\r\n${auth}${retry}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
