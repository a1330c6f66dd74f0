import { RuntimeError } from './errors.js';

/**
 * Throws an `aborted` RuntimeError when the signal has fired. Adapters call it at the top of
 * every method so an already-aborted call never starts work.
 * @example
 * throwIfAborted(opts?.signal, 'process');
 */
export function throwIfAborted(signal: AbortSignal | undefined, runtime?: string): void {
  if (signal?.aborted) throw abortedError(signal, runtime);
}

/** The `aborted` RuntimeError for a signal, keeping its reason as the cause. */
export function abortedError(signal: AbortSignal | undefined, runtime?: string): RuntimeError {
  return new RuntimeError('aborted', 'the operation was aborted', { runtime, cause: signal?.reason });
}

/**
 * Settles like `promise`, or rejects with an `aborted` RuntimeError as soon as `signal` fires.
 * The underlying work is not cancelled: use it to stop *waiting*.
 * @example
 * const info = await abortable(sharedPull, opts.signal, 'docker');
 */
export function abortable<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
  runtime?: string,
): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(abortedError(signal, runtime));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      promise.catch(() => {});
      reject(abortedError(signal, runtime));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/**
 * Resolves after `ms`, or rejects with an `aborted` RuntimeError when the signal fires first.
 * @example
 * await sleep(50, opts.signal, 'process');
 */
export function sleep(ms: number, signal?: AbortSignal, runtime?: string): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortedError(signal, runtime));
  return new Promise<void>((resolve, reject) => {
    // One listener per call, removed when the timer fires: callers poll every few ms.
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortedError(signal, runtime));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
