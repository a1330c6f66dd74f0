// Link doubles for the links bench: one child process holding many agent links, each through the
// agent's own `LinkClient` (the same upgrade, `register` message, and jittered-backoff reconnect
// loop as `runt-agent`), without runtimes or HTTP. Driven over IPC by links-bench.ts:
//   { type: 'open', url, links: [{ token, workstationId }] }  → { type: 'opened' } once all are up
//   { type: 'count' }                                          → { type: 'count', up, opens }
//   { type: 'close' }                                          → aborts every loop, then exits
import { createLogger, LinkClient, LinkDownGrace } from '@runt/agent';

export type LinkDoublesRequest =
  { type: 'open'; url: string; links: DoubleLink[] } | { type: 'count' } | { type: 'close' };

/** One link double: its credential, and the loopback address it dials from. */
export interface DoubleLink {
  token: string;
  workstationId: string;
  localAddress?: string;
}

export interface LinkDoublesCount {
  type: 'count';
  /** Links open right now. */
  up: number;
  /** Links opened since the process started (first opens and re-opens). */
  opens: number;
  /** Connection attempts that did not open (refused, reset, upgrade refused). */
  failures: number;
  /** Why attempts ended (a link's end or an attempt's failure), by HTTP status and reason; with BENCH_TRACE only. */
  why: Record<string, number>;
  /**
   * What runt-agent would have sent over HTTP meanwhile, which the doubles do not: with its link
   * down, an agent polls for offers every 2 s from a random moment 2–17 s after the drop
   * (`LinkDownGrace`: `--poll-interval-ms` + a random part of `LINK_DOWN_SPREAD_MS`), held while
   * its upgrade was shed with a `Retry-After` until the re-dial's answer is due
   * (`LinkClientOptions.onHold`). Each double runs the agent's own `LinkDownGrace`, fed as
   * runt-agent feeds it: the agents whose link came back after they would have polled, and
   * those polls; `beforeHint`: those of them sent before the agent's first `Retry-After` of the
   * outage (nothing to hold them yet: the control plane was down, or had not answered its dial).
   * `unheld`: the same without the shed hold (runt-agent before it).
   */
  wouldPoll: PollTally & { unheld: PollTally };
}

/** Agents that would have polled over HTTP, their polls, and those of them sent before a first `Retry-After`. */
export interface PollTally {
  agents: number;
  polls: number;
  beforeHint: number;
}

/** runt-agent's defaults: `--poll-interval-ms` and `LINK_DOWN_SPREAD_MS` (see `wouldPoll`). */
const POLL_INTERVAL_MS = 2_000;
const DOWN_SPREAD_MS = 15_000;

/**
 * The doubles' handshake timeout (BENCH_LINK_HANDSHAKE_TIMEOUT_MS, default 60 s; the agent's is
 * 10 s). An agent on its own machine reads the upgrade's answer as it arrives; 5,000 doubles in
 * one process on a shared, loaded 2-core machine read it seconds later, and at 10 s their own
 * lateness timed out handshakes the control plane had answered — it then counted links the
 * doubles had given up on, and every retry cost both sides again (0 of 19,800 opened in 60 s).
 */
const HANDSHAKE_TIMEOUT_MS = Number(process.env.BENCH_LINK_HANDSHAKE_TIMEOUT_MS ?? 60_000);

const why: Record<string, number> = {};
/**
 * Silent, or with BENCH_TRACE the `LinkClient`'s own "link down; reconnecting" lines tallied by
 * status and reason (what the trace prints: shed, timed out, reset…).
 */
const logger = process.env.BENCH_TRACE
  ? createLogger('debug', {
      write: (line: string) => {
        const m = JSON.parse(line) as { msg?: string; http_status?: number; reason?: string };
        if (m.msg !== 'link down; reconnecting') return;
        const key = `${m.http_status ?? ''} ${m.reason ?? ''}`.trim().slice(0, 60);
        why[key] = (why[key] ?? 0) + 1;
      },
    })
  : createLogger('silent');
/**
 * One controller per link, as each runt-agent has its own: thousands of `LinkClient`s on one
 * signal made every attempt's add/removeEventListener walk thousands of listeners (Node's
 * EventTarget keeps a list) — quadratic CPU in the doubles, not in what is measured.
 */
const lives: AbortController[] = [];
let up = 0;
let opens = 0;
let failures = 0;
const wouldPoll = {
  agents: 0,
  polls: 0,
  beforeHint: 0,
  unheld: { agents: 0, polls: 0, beforeHint: 0 },
};

/**
 * The HTTP polls one runt-agent would send while its link is down (`pollLoop`): the first once
 * its `LinkDownGrace` lets it, then every `POLL_INTERVAL_MS` (its jitter left out), each wait
 * lengthened by a hold (the loop sleeps out the grace it reads) and cut short where runt-agent
 * wakes its poll loop (the link dropped, a hold released).
 */
class WouldPoll {
  readonly grace = new LinkDownGrace({ minMs: POLL_INTERVAL_MS, spreadMs: DOWN_SPREAD_MS });
  /** performance.now() of the next poll, while the link is down after the restart. */
  #next: number | undefined;
  #polls = 0;
  #beforeHint = 0;
  /** A `Retry-After` came since the link dropped. */
  #hinted = false;

  constructor(private readonly tally: PollTally) {}

  /** The polls due by `now`. */
  #settle(now: number): void {
    if (this.#next === undefined || this.#next > now) return;
    const n = 1 + Math.floor((now - this.#next) / POLL_INTERVAL_MS);
    this.#polls += n;
    if (!this.#hinted) this.#beforeHint += n;
    this.#next += n * POLL_INTERVAL_MS;
  }

  /** The grace changed at `now`; `woken`: the poll loop re-reads it at once. */
  #replan(now: number, woken: boolean): void {
    if (this.#next === undefined) return;
    this.#settle(now);
    const at = now + this.grace.waitMs();
    if (woken || at > this.#next) this.#next = at;
  }

  up(): void {
    this.#settle(performance.now());
    if (this.#polls > 0) {
      this.tally.agents++;
      this.tally.polls += this.#polls;
      this.tally.beforeHint += this.#beforeHint;
    }
    this.#polls = 0;
    this.#beforeHint = 0;
    this.#hinted = false;
    this.#next = undefined;
    this.grace.up();
  }

  down(): void {
    this.grace.down();
    this.#next = performance.now() + this.grace.waitMs();
  }

  /** `held`: runt-agent now (it holds its polls); else runt-agent before (it only notes the hint). */
  hold(ms: number | undefined, held = true): void {
    if (this.#next !== undefined && ms !== undefined) {
      this.#settle(performance.now());
      this.#hinted = true;
    }
    if (!held) return;
    if (ms !== undefined) {
      this.grace.hold(ms);
      this.#replan(performance.now(), false);
    } else if (this.grace.release()) this.#replan(performance.now(), true);
  }
}

function open(url: string, links: DoubleLink[]): void {
  for (const { token, workstationId, localAddress } of links) {
    const polls = new WouldPoll(wouldPoll);
    const unheld = new WouldPoll(wouldPoll.unheld);
    /** The link was up once: only the restart's polls are counted. */
    let wasUp = false;
    const life = new AbortController();
    lives.push(life);
    const client = new LinkClient({
      url,
      ...(localAddress === undefined ? {} : { localAddress }),
      handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
      token: () => token,
      register: () => ({
        type: 'register',
        workstation_id: workstationId,
        workstation: {
          display_name: 'bench-link',
          hostname: 'bench',
          cpu_count: 1,
          memory_bytes: 1,
          max_runs: 1,
          runtimes: ['fake'],
          labels: {},
          agent_version: 'bench',
          // As runt-agent registers: listening, claim on offer (the queue is empty: nothing is
          // offered), so the restart pays what a real fleet's does (scheduling passes included).
          listening: true,
        },
        running_run_ids: [],
        claim_on_offer: { runner_id: 'bench', lease_ms: 30_000 },
      }),
      onAttempt: (_url, opened) => {
        if (!opened) failures++;
      },
      onHold: (ms) => {
        if (!wasUp) return;
        polls.hold(ms);
        unheld.hold(ms, false);
      },
      onMessage: () => {},
      onUp: (isUp) => {
        if (isUp) {
          up++;
          opens++;
          wasUp = true;
          polls.up();
          unheld.up();
        } else {
          up--;
          polls.down();
          unheld.down();
        }
      },
      onFatal: (e) => process.stderr.write(`link-doubles: ${e.message}\n`),
      logger,
    });
    void client.run(life.signal);
  }
}

process.on('message', (m: LinkDoublesRequest) => {
  if (m.type === 'open') open(m.url, m.links);
  else if (m.type === 'count')
    process.send!({ type: 'count', up, opens, failures, why, wouldPoll } satisfies LinkDoublesCount);
  else {
    for (const life of lives) life.abort();
    setTimeout(() => process.exit(0), 500).unref();
    process.disconnect();
  }
});
process.send!({ type: 'ready' });
