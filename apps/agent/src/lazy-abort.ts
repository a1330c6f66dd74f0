/**
 * An abort whose `AbortSignal` is made only when one is asked for. A run's cancel is read
 * (`aborted`) by every run and listened to only while an image is pulled: an `AbortSignal` made
 * per run for it cost an EventTarget each (issue 9, agent profile: `createAbortSignal` was ~1 %
 * of the agent's CPU per signal, ~1 KB allocated).
 *
 * @example
 * const cancel = new LazyAbort();
 * if (!cancel.aborted) await runtime.ensureImage(image, { signal: cancel.signal });
 */
export class LazyAbort {
  #controller: AbortController | undefined;
  #aborted = false;
  #reason: unknown;

  get aborted(): boolean {
    return this.#aborted;
  }

  /** Made on first read; already aborted (with the same reason) when read after {@link abort}. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  /** Idempotent: the first reason stays. */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}
