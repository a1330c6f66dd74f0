import { describe, expect, it } from 'vitest';
import { LOG_EVENT_MAX_CHARS, splitLogData } from './body-limit.js';

describe('splitLogData', () => {
  it('keeps short output whole and splits long output into pieces that join back', () => {
    expect(splitLogData('abc')).toEqual(['abc']);
    expect(splitLogData('a'.repeat(5), 2)).toEqual(['aa', 'aa', 'a']);
    const long = 'x'.repeat(LOG_EVENT_MAX_CHARS * 2 + 3);
    expect(splitLogData(long).map((p) => p.length)).toEqual([LOG_EVENT_MAX_CHARS, LOG_EVENT_MAX_CHARS, 3]);
  });

  it('never cuts a surrogate pair', () => {
    const pieces = splitLogData('a😀b😀', 2);
    expect(pieces).toEqual(['a', '😀', 'b', '😀']);
    expect(pieces.join('')).toBe('a😀b😀');
  });
});
