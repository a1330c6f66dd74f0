/**
 * The pace shed upgrades are told to come back at, at least (links a second): the target,
 * 20,000 agents linked again within 20 s (issue 9). A control plane that opens links faster is
 * measured doing so, and tells its shed agents to come back sooner.
 */
export const LINK_SHED_PACE_PER_SECOND = 1000;
/** No shed agent is told to wait longer than this (s), however long the queue. */
export const LINK_SHED_MAX_RETRY_AFTER_S = 60;

/**
 * When an agent whose upgrade was shed should come back: each is handed its own place in a queue
 * drained at the pace this process opens links (the last second's opens, at least
 * {@link LINK_SHED_PACE_PER_SECOND} a second), as whole seconds for `Retry-After`; the agent adds
 * up to a second of jitter (`LinkClient`). A fleet re-linking after a restart then comes back
 * about as fast as links open — each agent shed about once — instead of all retrying within the
 * same few seconds (a 1–5 s `Retry-After` at random had every agent shed again and again, the
 * retries costing the control plane as much as the links, and the losers' backoff growing to its
 * cap: p99 6.4 s for 2,000 links). See docs/agent.md, _Link_.
 *
 * @example
 * const pacer = new ShedPacer();
 * pacer.opened();                 // a link registered
 * const s = pacer.retryAfterS();  // 1, 1, …, 2, …: the place of the next shed upgrade
 */
export class ShedPacer {
  /** performance.now() of the last place handed out. */
  #cursor = Number.NEGATIVE_INFINITY;
  /** Opens counted since `#since`, and the pace measured over the last whole second. */
  #opens = 0;
  #since = performance.now();
  #measured = 0;

  constructor(private readonly floorPerSecond = LINK_SHED_PACE_PER_SECOND) {}

  /** A link opened (registered). */
  opened(now = performance.now()): void {
    this.#roll(now);
    this.#opens++;
  }

  /** Links a second the queue is drained at now. */
  pace(now = performance.now()): number {
    this.#roll(now);
    return Math.max(this.floorPerSecond, this.#measured);
  }

  /** The `Retry-After` (whole seconds, ≥ 1) of the next shed upgrade: the next place in the queue. */
  retryAfterS(now = performance.now()): number {
    // Never sooner than a second from now; an empty queue starts there.
    this.#cursor = Math.max(this.#cursor, now + 1000) + 1000 / this.pace(now);
    return Math.min(LINK_SHED_MAX_RETRY_AFTER_S, Math.max(1, Math.floor((this.#cursor - now) / 1000)));
  }

  #roll(now: number): void {
    const elapsed = now - this.#since;
    if (elapsed < 1000) return;
    // A quiet gap of more than a second measures nothing: the pace falls back to the floor.
    this.#measured = elapsed < 2000 ? (this.#opens * 1000) / elapsed : 0;
    this.#opens = 0;
    this.#since = now;
  }
}
