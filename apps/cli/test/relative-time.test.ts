import { describe, expect, it } from 'vitest';
import { relativeTime } from '../src/relative-time.js';

describe('relativeTime', () => {
  const at = (iso: string) => Date.parse(iso);
  it('names the largest whole unit', () => {
    expect(relativeTime('2026-01-01T00:00:00Z', at('2026-01-01T00:00:42Z'))).toBe('42s ago');
    expect(relativeTime('2026-01-01T00:00:00Z', at('2026-01-01T00:05:30Z'))).toBe('5m ago');
    expect(relativeTime('2026-01-01T00:00:00Z', at('2026-01-01T03:59:59Z'))).toBe('3h ago');
    expect(relativeTime('2026-01-01T00:00:00Z', at('2026-01-03T01:00:00Z'))).toBe('2d ago');
  });
  it('clamps a clock skewed into the future to 0s and leaves what is not a date as it is', () => {
    expect(relativeTime('2026-01-01T00:00:10Z', at('2026-01-01T00:00:00Z'))).toBe('0s ago');
    expect(relativeTime('soon', at('2026-01-01T00:00:00Z'))).toBe('soon');
  });
});
