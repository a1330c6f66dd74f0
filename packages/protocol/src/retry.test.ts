import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffDelay, jitter, parseRetryAfter, sleep } from './retry.js';

describe('parseRetryAfter', () => {
  it('reads delay-seconds and HTTP dates', () => {
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter(' 0 ')).toBe(0);
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:05 GMT', now)).toBe(5000);
    expect(parseRetryAfter('Wed, 31 Dec 2025 23:59:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(null)).toBeUndefined();
  });
});

describe('backoffDelay', () => {
  it('stays within [half, full] of the capped exponential and never under Retry-After', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60 }),
        fc.option(fc.integer({ min: 0, max: 120_000 }), { nil: undefined }),
        fc.double({ min: 0, max: 0.999_999, noNaN: true }),
        (attempt, retryAfterMs, r) => {
          const d = backoffDelay(attempt, { retryAfterMs, baseMs: 100, capMs: 5000, random: () => r });
          const exp = Math.min(5000, 100 * 2 ** Math.min(attempt - 1, 30));
          expect(d).toBeGreaterThanOrEqual(Math.max(retryAfterMs ?? 0, Math.floor(exp / 2)));
          expect(d).toBeLessThanOrEqual(Math.max(retryAfterMs ?? 0, exp));
        },
      ),
    );
  });

  it("with full jitter spreads over the whole [0, ceiling] window (a reconnecting fleet's retries)", () => {
    const opts = { baseMs: 500, capMs: 15_000, jitter: 'full' as const };
    expect(backoffDelay(1, { ...opts, random: () => 0 })).toBe(0);
    expect(backoffDelay(1, { ...opts, random: () => 0.5 })).toBe(250);
    expect(backoffDelay(3, { ...opts, random: () => 0.25 })).toBe(500);
    expect(backoffDelay(10, { ...opts, random: () => 0.999 })).toBe(14_985);
    // Equal jitter (the default) never goes below half the ceiling.
    expect(backoffDelay(3, { baseMs: 500, random: () => 0 })).toBe(1000);
  });
});

describe('sleep', () => {
  it('resolves true after the delay and false at once when aborted, never rejecting', async () => {
    expect(await sleep(5)).toBe(true);
    const ac = new AbortController();
    const started = performance.now();
    const cut = sleep(10_000, ac.signal);
    ac.abort(new Error('stop'));
    expect(await cut).toBe(false);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(await sleep(10, ac.signal)).toBe(false);
  });
});

describe('jitter', () => {
  it('stays within ±fraction of the period', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1_000_000 }),
        fc.double({ min: 0, max: 0.999_999, noNaN: true }),
        (ms, r) => {
          const d = jitter(ms, 0.1, () => r);
          expect(d).toBeGreaterThanOrEqual(Math.floor(ms * 0.9));
          expect(d).toBeLessThanOrEqual(Math.ceil(ms * 1.1));
        },
      ),
    );
  });
});
