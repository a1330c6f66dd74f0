import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { RuntimeError } from './errors.js';
import { sleep } from './abort.js';

describe('sleep', () => {
  it('leaves no abort listener behind once it resolves (adapters poll it every 50 ms)', async () => {
    const controller = new AbortController();
    for (let i = 0; i < 20; i++) await sleep(1, controller.signal);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('rejects with an aborted RuntimeError when the signal fires, and when it already had', async () => {
    const controller = new AbortController();
    const pending = sleep(60_000, controller.signal, 'process');
    controller.abort();
    await expect(pending).rejects.toMatchObject({ code: 'aborted', runtime: 'process' });
    await expect(sleep(1, controller.signal)).rejects.toBeInstanceOf(RuntimeError);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });
});
