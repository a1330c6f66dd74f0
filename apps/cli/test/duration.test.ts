import { describe, expect, it } from 'vitest';
import { parseDuration } from '../src/duration.js';

describe('parseDuration', () => {
  it('reads seconds, minutes, hours, days and sums of them', () => {
    expect(parseDuration('90', 'timeout')).toBe(90);
    expect(parseDuration('90s', 'timeout')).toBe(90);
    expect(parseDuration('10m', 'timeout')).toBe(600);
    expect(parseDuration('1h30m', 'timeout')).toBe(5400);
    expect(parseDuration('1d', 'timeout')).toBe(86_400);
  });

  it('refuses anything else in one line naming the flag', () => {
    expect(() => parseDuration('10 minutes', 'timeout')).toThrow(
      'invalid --timeout "10 minutes": use a duration such as 90s, 10m, 2h or 1h30m',
    );
    expect(() => parseDuration('0s', 'queue-timeout')).toThrow(
      'invalid --queue-timeout "0s": must be at least 1s',
    );
    expect(() => parseDuration('-5m', 'timeout')).toThrow(/^invalid --timeout/);
  });
});
