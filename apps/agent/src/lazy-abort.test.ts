import { afterEach, describe, expect, it, vi } from 'vitest';
import { LazyAbort } from './lazy-abort.js';

const signalGetter = Object.getOwnPropertyDescriptor(AbortController.prototype, 'signal')!;

describe('LazyAbort', () => {
  afterEach(() => {
    Object.defineProperty(AbortController.prototype, 'signal', signalGetter);
  });

  it('makes no AbortSignal while only `aborted` is read', () => {
    const made = vi.fn();
    Object.defineProperty(AbortController.prototype, 'signal', {
      ...signalGetter,
      get(this: AbortController) {
        made();
        return signalGetter.get!.call(this) as AbortSignal;
      },
    });
    const cancel = new LazyAbort();
    expect(cancel.aborted).toBe(false);
    cancel.abort(new Error('cancelled'));
    expect(cancel.aborted).toBe(true);
    expect(made).not.toHaveBeenCalled();
  });

  it('hands a signal that follows it, read before or after the abort', () => {
    const early = new LazyAbort();
    const listener = vi.fn();
    early.signal.addEventListener('abort', listener);
    const why = new Error('first');
    early.abort(why);
    early.abort(new Error('second'));
    expect(listener).toHaveBeenCalledTimes(1);
    expect(early.signal.reason).toBe(why);

    const late = new LazyAbort();
    late.abort(why);
    expect(late.signal.aborted).toBe(true);
    expect(late.signal.reason).toBe(why);
    expect(late.signal).toBe(late.signal);
  });
});
