/**
 * Wakes live event streams when a run's events are appended in this process. Streams also
 * re-read the database on a timer, so appends on another replica are seen too, only later.
 */
export class EventWaiters {
  private readonly waiting = new Map<string, Set<() => void>>();

  /**
   * Resolves at the next `notify(runId)`, after `timeoutMs`, or when `signal` aborts.
   *
   * @example
   * await waiters.wait('run_1', 1000, request.signal);
   */
  wait(runId: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let set = this.waiting.get(runId);
      if (!set) this.waiting.set(runId, (set = new Set()));
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        const s = this.waiting.get(runId);
        s?.delete(done);
        if (s?.size === 0) this.waiting.delete(runId);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener('abort', done, { once: true });
      set.add(done);
    });
  }

  /** Wakes every stream waiting on `runId`. */
  notify(runId: string): void {
    const set = this.waiting.get(runId);
    if (!set) return;
    for (const done of [...set]) done();
  }
}
