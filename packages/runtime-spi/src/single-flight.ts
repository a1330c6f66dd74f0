import { abortable, throwIfAborted } from './abort.js';
import { RuntimeError } from './errors.js';

export interface SingleFlightOptions {
  /** Default time one piece of work may take before its signal aborts (default 10 minutes). */
  timeoutMs?: number;
  /** Runtime name put on errors. */
  runtime?: string;
}

export interface SingleFlightRunOptions {
  /** Only stops this caller waiting; the shared work keeps running for the others. */
  signal?: AbortSignal;
  /** Overrides the default timeout; only the call that starts the work decides it. */
  timeoutMs?: number;
}

export interface SingleFlight<T> {
  /**
   * Runs `work` for `key` unless it is already running, in which case the caller joins the
   * running one. `work` gets a signal that fires on `close()` or after the timeout, never
   * because a caller gave up.
   */
  run(key: string, work: (signal: AbortSignal) => Promise<T>, opts?: SingleFlightRunOptions): Promise<T>;
  /** Keys with work in flight. */
  keys(): string[];
  /** Fires when the owner closes; adapters can hang other background work off it. */
  readonly signal: AbortSignal;
  /** Aborts all work in flight (their callers reject). Idempotent. */
  close(): void;
}

/**
 * Keyed promise sharing for work that must not be bound to one caller's deadline, such as
 * an image pull: concurrent calls for one key share one run; a caller whose signal aborts
 * stops waiting without cancelling the run; the run itself is bounded by its own timeout
 * and by the owner's lifetime (`close()`). Settled work is forgotten, so a later call runs
 * again (make the work itself idempotent, e.g. "inspect, pull if missing").
 * @example
 * const pulls = singleFlight<ImageInfo>({ runtime: 'docker' });
 * const info = await pulls.run(ref, (signal) => pull(ref, signal), { signal: opts.signal });
 * // in Runtime.close(): pulls.close();
 */
export function singleFlight<T>(options: SingleFlightOptions = {}): SingleFlight<T> {
  const lifetime = new AbortController();
  const inFlight = new Map<string, Promise<T>>();
  const defaultTimeout = options.timeoutMs ?? 10 * 60_000;

  const start = (key: string, work: (signal: AbortSignal) => Promise<T>, timeoutMs: number): Promise<T> => {
    const timeout = new AbortController();
    const timer = setTimeout(() => {
      timeout.abort(
        new RuntimeError('timeout', `"${key}" took longer than ${timeoutMs} ms`, {
          runtime: options.runtime,
        }),
      );
    }, timeoutMs);
    timer.unref?.();
    const signal = AbortSignal.any([lifetime.signal, timeout.signal]);
    const run = (async () => {
      try {
        return await abortableByOwner(work(signal), signal);
      } finally {
        clearTimeout(timer);
        inFlight.delete(key);
      }
    })();
    inFlight.set(key, run);
    run.catch(() => {});
    return run;
  };

  // Work that ignores its signal still must not keep callers waiting after close/timeout.
  const abortableByOwner = (promise: Promise<T>, signal: AbortSignal): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(ownerError(signal));
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });

  const ownerError = (signal: AbortSignal): RuntimeError => {
    const reason: unknown = signal.reason;
    if (
      reason instanceof RuntimeError ||
      (typeof reason === 'object' && reason !== null && (reason as { code?: unknown }).code === 'timeout')
    ) {
      return reason as RuntimeError;
    }
    return new RuntimeError('aborted', 'the runtime was closed', { runtime: options.runtime, cause: reason });
  };

  return {
    run(key, work, opts = {}) {
      try {
        throwIfAborted(opts.signal, options.runtime);
        if (lifetime.signal.aborted)
          throw new RuntimeError('aborted', 'the runtime was closed', { runtime: options.runtime });
      } catch (error) {
        return Promise.reject(error);
      }
      const shared = inFlight.get(key) ?? start(key, work, opts.timeoutMs ?? defaultTimeout);
      return abortable(shared, opts.signal, options.runtime);
    },
    keys: () => [...inFlight.keys()],
    signal: lifetime.signal,
    close() {
      if (!lifetime.signal.aborted) lifetime.abort();
    },
  };
}
