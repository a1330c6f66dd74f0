import { describe, expect, it } from 'vitest';
import { isRuntimeError } from './errors.js';
import { singleFlight } from './single-flight.js';

const deferred = <T>() => {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
};

describe('singleFlight', () => {
  it('shares one run between concurrent callers and forgets it once settled', async () => {
    const flight = singleFlight<number>();
    let runs = 0;
    const gate = deferred<number>();
    const work = async () => {
      runs++;
      return gate.promise;
    };
    const all = Promise.all([flight.run('k', work), flight.run('k', work), flight.run('k', work)]);
    expect(flight.keys()).toEqual(['k']);
    gate.resolve(7);
    expect(await all).toEqual([7, 7, 7]);
    expect(runs).toBe(1);
    expect(flight.keys()).toEqual([]);
    expect(await flight.run('k', async () => 8)).toBe(8);
  });

  it('lets a caller stop waiting without cancelling the run for the others', async () => {
    const flight = singleFlight<string>();
    const gate = deferred<string>();
    let workSignal: AbortSignal | undefined;
    const work = async (signal: AbortSignal) => {
      workSignal = signal;
      return gate.promise;
    };
    const caller = new AbortController();
    const impatient = flight.run('ref', work, { signal: caller.signal });
    const patient = flight.run('ref', work);
    caller.abort();
    await expect(impatient).rejects.toSatisfy((e) => isRuntimeError(e, 'aborted'));
    expect(workSignal?.aborted).toBe(false);
    gate.resolve('pulled');
    expect(await patient).toBe('pulled');
  });

  it('aborts the work after its own timeout, with a timeout error', async () => {
    const flight = singleFlight<void>({ timeoutMs: 20, runtime: 'test' });
    let sawAbort = false;
    const running = flight.run(
      'slow',
      (signal) =>
        new Promise<void>(() => {
          signal.addEventListener('abort', () => {
            sawAbort = true;
          });
        }),
    );
    const error = await running.catch((e: unknown) => e);
    expect(isRuntimeError(error, 'timeout')).toBe(true);
    expect(sawAbort).toBe(true);
  });

  it('aborts everything in flight on close and refuses new work afterwards', async () => {
    const flight = singleFlight<void>();
    const running = flight.run('k', () => new Promise<void>(() => {}));
    flight.close();
    await expect(running).rejects.toSatisfy((e) => isRuntimeError(e, 'aborted'));
    expect(flight.signal.aborted).toBe(true);
    await expect(flight.run('k', async () => {})).rejects.toSatisfy((e) => isRuntimeError(e, 'aborted'));
  });

  it('passes a failure to every waiter and lets the next call try again', async () => {
    const flight = singleFlight<number>();
    const failing = () => Promise.reject(new Error('registry down'));
    await expect(Promise.all([flight.run('k', failing), flight.run('k', failing)])).rejects.toThrow(
      'registry down',
    );
    expect(await flight.run('k', async () => 1)).toBe(1);
  });
});
