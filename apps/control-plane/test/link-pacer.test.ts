import { describe, expect, it } from 'vitest';
import { LINK_SHED_MAX_RETRY_AFTER_S, ShedPacer } from '../src/link/link-pacer.js';

// Issue 9: a shed upgrade is told when to come back — its own place in a queue drained at the
// pace links open — so a re-linking fleet is shed about once each instead of retrying together.
describe('ShedPacer', () => {
  it('hands out places a second apart per `pace` agents, starting a second from now', () => {
    const pacer = new ShedPacer(1000);
    const t = 1_000_000;
    const told = Array.from({ length: 5000 }, () => pacer.retryAfterS(t));
    expect(told[0]).toBe(1);
    expect(told.filter((s) => s === 1)).toHaveLength(999);
    expect(told.filter((s) => s === 2)).toHaveLength(1000);
    expect(told[4999]).toBe(6);
    // Non-decreasing: nobody is told to come back before an agent shed earlier.
    expect(told.every((s, i) => i === 0 || s >= told[i - 1]!)).toBe(true);
  });

  it('drains at the pace links opened over the last second when that is faster than the floor', () => {
    const pacer = new ShedPacer(1000);
    const t = 2_000_000;
    pacer.opened(t);
    for (let i = 0; i < 3999; i++) pacer.opened(t + 500);
    expect(pacer.pace(t + 1000)).toBe(4000);
    const told = Array.from({ length: 8000 }, () => pacer.retryAfterS(t + 1000));
    expect(told[7999]).toBe(3);
    // A quiet stretch measures nothing: back to the floor.
    expect(pacer.pace(t + 5000)).toBe(1000);
  });

  it('moves on from a queue that has drained, and caps what it tells', () => {
    const pacer = new ShedPacer(10);
    const t = 3_000_000;
    for (let i = 0; i < 50; i++) pacer.retryAfterS(t);
    expect(pacer.retryAfterS(t)).toBe(6);
    expect(pacer.retryAfterS(t + 60_000)).toBe(1); // the queue drained long ago
    for (let i = 0; i < 10_000; i++) pacer.retryAfterS(t + 60_000);
    expect(pacer.retryAfterS(t + 60_000)).toBe(LINK_SHED_MAX_RETRY_AFTER_S);
  });
});
