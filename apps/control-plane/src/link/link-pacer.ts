/**
 * The slowest pace shed upgrades are told to come back at in the first {@link LINK_SHED_FLOOR_MS}
 * of this process (links a second): the target, 20,000 agents linked again within 20 s
 * (issue 9). From then on the pace is measured alone.
 */
export const LINK_SHED_PACE_PER_SECOND = 1000;
/**
 * How long after this process started its shed pace is at least {@link LINK_SHED_PACE_PER_SECOND}
 * (ms): a restart's first links are its slowest (cold statements and code, a fleet's reconnects
 * arriving together), so a pace measured on them told the first shed agents to come back up to a
 * minute later while the control plane, warm seconds later, opened ~1,500 links a second and sat
 * idle (p99 67 s, 11,233 of 19,800 back within 20 s; docs/benchmarks.md). A control plane that
 * really is slower sheds those agents once more when they come back, and places them then at the
 * pace it measured: at most one extra shed per agent, only after a start.
 */
export const LINK_SHED_FLOOR_MS = 20_000;
/**
 * The queue's horizon (s): no shed agent is told to wait longer. Past it the queue is full, and
 * a shed agent is told a random second within the horizon instead (not all the same last second:
 * they would come back as one herd) — it is shed again then, and takes a place nearer the front.
 */
export const LINK_SHED_MAX_RETRY_AFTER_S = 60;
/**
 * Weight of each place given back in the mean time a place is held ({@link ShedPacer}): the
 * mean follows the last few dozen links, so a control plane that slows down (or a restart's
 * first, cold links) is measured within a fraction of one `maxOpening` cohort.
 */
export const LINK_SHED_HOLD_WEIGHT = 1 / 32;

/**
 * When an agent whose upgrade was shed should come back: each is handed its own place in a queue
 * drained at the pace opening places free up here, as whole seconds for `Retry-After` (at most
 * {@link LINK_SHED_MAX_RETRY_AFTER_S}); the agent adds up to a second of jitter (`LinkClient`). The pace is measured, not assumed: upgrades are
 * shed only while all `places` (`maxOpening`) are held, and then places free up at
 * `places ÷ the mean time a place is held` a second (Little's law) — the mean over the last few
 * dozen places given back (registered, refused, dropped, or silent past `openingMaxMs`). Before
 * any place has been given back, and for `floorForMs` after the pacer was made (the process's
 * start: a restart), the pace is at least `floorPerSecond`. A fleet re-linking after a restart
 * then comes back at least as fast as the target from the first second, and otherwise as fast
 * as this process opens links — each agent shed about once (twice at most after a start).
 *
 * Before, the pace was the last second's opens but at least 1,000 a second: a control plane
 * opening ~30 links a second (a loaded machine) told its shed agents to come back ~30 times too
 * soon, and shed them again and again — 75,002 sheds for 19,800 agents, each a TCP connect, an
 * HTTP request and an answer on both sides (docs/benchmarks.md, _Links: the shed pace is
 * measured_). A pace read while the places were not all held over-estimates (holds are short
 * then): the agents told so come back sooner and are shed once more, which is cheap; an
 * under-estimate would leave the control plane idle while its agents wait, which is not.
 *
 * @example
 * const pacer = new ShedPacer(256);
 * pacer.freed(180);               // a place was held 180 ms (its link registered)
 * const s = pacer.retryAfterS();  // 1, 1, …, 2, …: the place of the next shed upgrade
 */
export class ShedPacer {
  /** performance.now() of the last place handed out. */
  #cursor = Number.NEGATIVE_INFINITY;
  /** Mean time an opening place is held (ms); undefined until one was given back. */
  #heldMs: number | undefined;
  /** performance.now() until which the pace is at least `floorPerSecond`. */
  readonly #floorUntil: number;

  constructor(
    /** Links that may be opening at once (`LinkServerOptions.maxOpening`). */
    private readonly places: number,
    private readonly floorPerSecond = LINK_SHED_PACE_PER_SECOND,
    /** Randomness in [0, 1) for places past the horizon (default `Math.random`). */
    private readonly random: () => number = Math.random,
    /** How long from now the pace is at least `floorPerSecond` (default {@link LINK_SHED_FLOOR_MS}). */
    floorForMs = LINK_SHED_FLOOR_MS,
    now = performance.now(),
  ) {
    this.#floorUntil = now + floorForMs;
  }

  /** An opening place was given back after `heldMs` (its link registered, or ended, or timed out). */
  freed(heldMs: number): void {
    const ms = Math.max(1, heldMs);
    this.#heldMs =
      this.#heldMs === undefined ? ms : this.#heldMs + (ms - this.#heldMs) * LINK_SHED_HOLD_WEIGHT;
  }

  /** Links a second the queue is drained at now. */
  pace(now = performance.now()): number {
    if (this.#heldMs === undefined) return this.floorPerSecond;
    const measured = (this.places * 1000) / this.#heldMs;
    return now < this.#floorUntil ? Math.max(this.floorPerSecond, measured) : measured;
  }

  /** The `Retry-After` (whole seconds, ≥ 1) of the next shed upgrade: the next place in the queue. */
  retryAfterS(now = performance.now()): number {
    // Never sooner than a second from now; an empty queue starts there.
    const next = Math.max(this.#cursor, now + 1000) + 1000 / this.pace(now);
    // A queue full to the horizon: a random second within it, and no place taken.
    if (next - now >= (LINK_SHED_MAX_RETRY_AFTER_S + 1) * 1000)
      return 1 + Math.floor(this.random() * LINK_SHED_MAX_RETRY_AFTER_S);
    this.#cursor = next;
    // `next - now` is a difference of two large fractional times: 3,000 ms apart can come out as
    // 2,999.9999999995 and floor to one second short (~1 in 1,300 sheds; failed agent CI once).
    return Math.max(1, Math.floor((next - now) / 1000 + 1e-6));
  }
}
