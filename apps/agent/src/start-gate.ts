/**
 * One run's place at the {@link StartGate}: held (its workload may run), waiting in the gate's
 * FIFO queue, or released. A permit waiting has a promise that settles `true` when it is
 * granted, `false` when it is released before (the run was cancelled, dropped or handed back).
 */
export class StartPermit {
  state: 'held' | 'waiting' | 'released';
  /** Settles once the permit is granted (`true`) or released while waiting (`false`); made only for a wait. */
  readonly granted: Promise<boolean> | undefined;
  #settle: ((granted: boolean) => void) | undefined;

  constructor(held: boolean) {
    this.state = held ? 'held' : 'waiting';
    if (!held) this.granted = new Promise<boolean>((resolve) => (this.#settle = resolve));
  }

  /** @internal The gate grants (`true`) or withdraws (`false`) a waiting permit. */
  settle(granted: boolean): void {
    this.state = granted ? 'held' : 'released';
    this.#settle?.(granted);
    this.#settle = undefined;
  }
}

/**
 * The agent's start gate (`--prefetch`, issue 9): at most `permits` (`--max-runs`) workloads
 * run at once, while the agent holds up to `max-runs + prefetch` runs. A run claimed ahead of a
 * free slot is prepared, created and durably journaled, then waits here (FIFO) for a permit;
 * its start costs no journal write when one frees. A permit is released once the workload has
 * exited (the run reports its end), or when the run is dropped, cancelled, handed back or
 * cleaned up, whichever comes first ({@link release} is idempotent). With prefetch 0 the agent
 * makes no gate at all: nothing waits, and no run pays for one.
 *
 * A re-adopted run is running already and never waits: it {@link force}s a permit, even past
 * the limit (the limit is kept again as runs end).
 *
 * @example
 * const gate = new StartGate(4);
 * const permit = gate.acquire();
 * if (permit.state === 'waiting' && !(await permit.granted)) return; // withdrawn
 * // … start the workload; at its exit:
 * gate.release(permit);
 */
export class StartGate {
  /** Permits free (below 0 while re-adopted runs exceed the limit). */
  #free: number;
  /** Waiting permits, oldest first (a Set: a withdrawn one leaves in O(1)). */
  readonly #queue = new Set<StartPermit>();
  /** Closed (the agent is stopping): a permit that would wait is refused at once. */
  #closed = false;

  constructor(readonly permits: number) {
    this.#free = permits;
  }

  /** Permits held right now. */
  get held(): number {
    return this.permits - this.#free;
  }

  /** Permits waiting right now. */
  get waiting(): number {
    return this.#queue.size;
  }

  /**
   * A permit: held at once when one is free and nobody waits before it, else waiting in line.
   * A closed gate answers a permit that would wait `released` (its `granted` is `false`).
   */
  acquire(): StartPermit {
    if (this.#free > 0 && this.#queue.size === 0) {
      this.#free--;
      return new StartPermit(true);
    }
    const permit = new StartPermit(false);
    if (this.#closed) permit.settle(false);
    else this.#queue.add(permit);
    return permit;
  }

  /** A permit held at once, past the limit if need be (a re-adopted run, running already). */
  force(): StartPermit {
    this.#free--;
    return new StartPermit(true);
  }

  /** Gives a permit back (a waiting one leaves the line, its `granted` settling `false`); idempotent. */
  release(permit: StartPermit): void {
    if (permit.state === 'released') return;
    if (permit.state === 'waiting') {
      this.#queue.delete(permit);
      permit.settle(false);
      return;
    }
    permit.state = 'released';
    this.#free++;
    this.#grant();
  }

  /** Stops the line: every waiting permit is refused (`granted` settles `false`), and so is every later one that would wait. */
  close(): void {
    this.#closed = true;
    for (const permit of this.#queue) permit.settle(false);
    this.#queue.clear();
  }

  #grant(): void {
    while (this.#free > 0) {
      const next = this.#queue.values().next();
      if (next.done) return;
      this.#queue.delete(next.value);
      this.#free--;
      next.value.settle(true);
    }
  }
}
