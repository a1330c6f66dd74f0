import { describe, expect, it } from 'vitest';
import { LINK_SHED_MAX_RETRY_AFTER_S, ShedPacer } from '../src/link/link-pacer.js';

// Issue 9: a shed upgrade is told when to come back — its own place in a queue drained at the
// pace links open — so a re-linking fleet is shed about once each instead of retrying together.
describe('ShedPacer', () => {
  it('hands out places a second apart per `pace` agents, starting a second from now', () => {
    const pacer = new ShedPacer(256, 1000);
    const t = 1_000_000;
    const told = Array.from({ length: 5000 }, () => pacer.retryAfterS(t));
    expect(told[0]).toBe(1);
    expect(told.filter((s) => s === 1)).toHaveLength(999);
    expect(told.filter((s) => s === 2)).toHaveLength(1000);
    expect(told[4999]).toBe(6);
    // Non-decreasing: nobody is told to come back before an agent shed earlier.
    expect(told.every((s, i) => i === 0 || s >= told[i - 1]!)).toBe(true);
  });

  // performance.now() is fractional: at 64,863.27547306603 ms, (now + 1,000) + 2,000 − now is
  // 2,999.9999999 in floating point, and the first agent shed at 0.5 links/s was told 2 s, not 3.
  it('tells whole seconds exactly whatever the fraction of now', () => {
    for (const now of [64_863.27547306603, 1_234.5, 9_999_999.123456]) {
      const pacer = new ShedPacer(0, 0.5, Math.random, 60_000, now);
      expect(pacer.retryAfterS(now)).toBe(3);
    }
  });

  it('drains at the measured pace (places ÷ mean hold), faster than the floor', () => {
    const pacer = new ShedPacer(256, 1000);
    for (let i = 0; i < 100; i++) pacer.freed(64); // 256 places held 64 ms: 4,000 links/s
    expect(pacer.pace()).toBeCloseTo(4000, 6);
    const told = Array.from({ length: 8000 }, () => pacer.retryAfterS(2_000_000));
    expect(told[7999]).toBe(3);
  });

  // The fix for the 19,800-link bench's 75,002 sheds: the pace was at least 1,000/s, so a control
  // plane opening ~30 links a second told its shed agents to come back ~30 times too soon.
  it('drains at the measured pace when it is slower than the floor: each agent shed about once', () => {
    const pacer = new ShedPacer(256, 1000, Math.random, 0); // past the start's floor (tested below)
    for (let i = 0; i < 100; i++) pacer.freed(8000); // 256 places held 8 s: 32 links/s
    expect(pacer.pace()).toBeCloseTo(32, 6);
    const t = 3_000_000;
    const told = Array.from({ length: 320 }, () => pacer.retryAfterS(t));
    // 320 agents at 32 a second: the last comes back 10 s after the first second, not within it.
    expect(told[0]).toBe(1);
    expect(told[319]).toBe(11);
    expect(told.filter((s) => s === 5)).toHaveLength(32);
  });

  it('follows the recent holds: a control plane that slows down is measured within a cohort', () => {
    const pacer = new ShedPacer(256, 1000, Math.random, 0);
    for (let i = 0; i < 1000; i++) pacer.freed(100); // 2,560/s
    for (let i = 0; i < 256; i++) pacer.freed(1000); // then 256/s
    expect(pacer.pace()).toBeGreaterThan(256);
    expect(pacer.pace()).toBeLessThan(300);
  });

  it('moves on from a queue that has drained', () => {
    const pacer = new ShedPacer(1, 10);
    const t = 4_000_000;
    for (let i = 0; i < 50; i++) pacer.retryAfterS(t);
    expect(pacer.retryAfterS(t)).toBe(6);
    expect(pacer.retryAfterS(t + 60_000)).toBe(1); // the queue drained long ago
  });

  // Before, every agent past the horizon was told its last second: they came back as one herd
  // (seen in the 19,800-link bench: ~12,000 agents at once, 60 s after a slow first cohort).
  it('past the horizon tells a random second within it, and keeps the queue', () => {
    let r = 0;
    const pacer = new ShedPacer(1, 10, () => (r = (r + 0.37) % 1), 0);
    const t = 5_000_000;
    const queued = Array.from({ length: 599 }, () => pacer.retryAfterS(t));
    expect(queued[598]).toBe(LINK_SHED_MAX_RETRY_AFTER_S); // 599 at 10/s fill the horizon
    const past = Array.from({ length: 1000 }, () => pacer.retryAfterS(t));
    expect(Math.min(...past)).toBe(1);
    expect(Math.max(...past)).toBe(LINK_SHED_MAX_RETRY_AFTER_S);
    expect(past.filter((s) => s === LINK_SHED_MAX_RETRY_AFTER_S).length).toBeLessThan(100);
    // No place was taken past the horizon: 30 s on, the next shed queues 30 s out.
    expect(pacer.retryAfterS(t + 30_000)).toBe(31);
  });

  // The 19,800-link restart: the first cohort after a cold start held its places ~5× longer than
  // the warm ones, so the measured pace told the first shed agents to come back up to a minute
  // later while the control plane, warm seconds later, sat idle (p99 67 s).
  it('hands out places at no less than the floor for the first 20 s after a start, measured after', () => {
    const start = 6_000_000;
    const pacer = new ShedPacer(256, 1000, Math.random, 20_000, start);
    for (let i = 0; i < 100; i++) pacer.freed(5000); // a cold cohort: 256 places held 5 s (51/s)
    expect(pacer.pace(start + 1000)).toBe(1000);
    const told = Array.from({ length: 19_000 }, () => pacer.retryAfterS(start + 1000));
    // 19,000 shed agents in the first second after a restart: all back within 20 s of it.
    expect(told[18_999]).toBe(20);
    expect(told.filter((s) => s === 10)).toHaveLength(1000);
    // Warm and faster than the floor: measured.
    for (let i = 0; i < 1000; i++) pacer.freed(128);
    expect(pacer.pace(start + 5000)).toBeCloseTo(2000, 0);
    // Past the start's window a slow control plane is measured again.
    for (let i = 0; i < 1000; i++) pacer.freed(5000);
    expect(pacer.pace(start + 20_000)).toBeCloseTo(51.2, 1);
  });
});
