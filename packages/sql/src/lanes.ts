/** Which queue an operation waits in; `priority` goes first. */
export type Lane = 'priority' | 'normal';

/**
 * One-at-a-time access with two queues: whenever the holder finishes, the longest-waiting
 * `priority` operation goes next, and a `normal` one only when no `priority` one waits. Used in
 * front of PGlite's single connection so lease renewals do not wait behind the queued work
 * they protect.
 *
 * Between two operations the gate yields to the event loop (`setImmediate`) before picking the
 * next one. PGlite executes in the calling thread and its promises settle as microtasks, so a
 * backlog of queries would otherwise drain without ever letting I/O in: a renewal arriving on a
 * socket would wait, unread, until the whole backlog was done, and no lane could help it.
 *
 * @example
 * const gate = new LaneGate();
 * await gate.run('priority', () => pg.query('update leases …'));
 */
export class LaneGate {
  #busy = false;
  readonly #waiting: Record<Lane, Array<() => void>> = { priority: [], normal: [] };

  /** Runs `fn` once it is this operation's turn in `lane`; the next one starts when it settles. */
  async run<T>(lane: Lane, fn: () => Promise<T>): Promise<T> {
    if (this.#busy) await new Promise<void>((resolve) => this.#waiting[lane].push(resolve));
    else this.#busy = true;
    try {
      return await fn();
    } finally {
      this.#handOn();
    }
  }

  #handOn(): void {
    if (this.#waiting.priority.length + this.#waiting.normal.length === 0) {
      this.#busy = false;
      return;
    }
    // Let pending I/O (a renewal's request) in first; pick the next one after it.
    setImmediate(() => (this.#waiting.priority.shift() ?? this.#waiting.normal.shift())!());
  }

  /** How many operations wait in each lane (not counting the one running). */
  get waiting(): Record<Lane, number> {
    return { priority: this.#waiting.priority.length, normal: this.#waiting.normal.length };
  }
}
