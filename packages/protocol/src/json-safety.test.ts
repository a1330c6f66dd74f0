import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MAX_JSON_DEPTH,
  findUnsafeJson,
  isUnsafeText,
  jsonNestsDeeperThan,
  jsonTextIsSafe,
} from './json-safety.js';

const nested = (levels: number) => `${'{"a":['.repeat(levels)}1${']}'.repeat(levels)}`;

describe('json safety', () => {
  it('finds NUL and lone surrogates in values and keys, with their path', () => {
    expect(findUnsafeJson({ a: ['ok', 'x\u0000'] })).toMatchObject({ path: 'a.1' });
    expect(findUnsafeJson({ a: { b: '\ud800' } })).toMatchObject({ path: 'a.b' });
    expect(findUnsafeJson({ ['k\udfff']: 1 })).toMatchObject({ path: 'k\udfff' });
    expect(findUnsafeJson({ a: ['😀', 'é', '\t\n'], b: null, c: 1 })).toBeUndefined();
  });

  it('bounds nesting, in the text before parsing and in the value after', () => {
    expect(jsonNestsDeeperThan(nested(5000))).toBe(true);
    expect(jsonNestsDeeperThan(nested(10))).toBe(false);
    expect(jsonNestsDeeperThan(`{"s":"${'['.repeat(500)}"}`)).toBe(false); // brackets in strings do not count
    expect(jsonNestsDeeperThan(`{"s":"\\"${'{'.repeat(500)}"}`)).toBe(false);
    let deep: unknown = 1;
    for (let i = 0; i < 5000; i++) deep = [deep];
    expect(findUnsafeJson(deep)?.message).toMatch(/deeper/);
    expect(findUnsafeJson(JSON.parse(nested(MAX_JSON_DEPTH / 2 - 1)))).toBeUndefined();
  });

  it('answers nesting exactly at the bound, whether or not the text has more brackets than the bound', () => {
    expect(jsonNestsDeeperThan(nested(MAX_JSON_DEPTH / 2))).toBe(false); // 64 levels, 64 brackets
    expect(jsonNestsDeeperThan(`[${nested(MAX_JSON_DEPTH / 2)}]`)).toBe(true);
    expect(jsonNestsDeeperThan(`[${nested(MAX_JSON_DEPTH / 2)},[1]]`)).toBe(true);
    expect(jsonNestsDeeperThan(`[${'[1],'.repeat(200)}1]`)).toBe(false); // many brackets, depth 2
    // the plain scan of every character, before the bracket count answered most texts without it
    const scan = (text: string, max: number) => {
      let depth = 0;
      let inString = false;
      for (let i = 0; i < text.length; i++) {
        const ch = text[i];
        if (inString) {
          if (ch === '\\') i++;
          else if (ch === '"') inString = false;
        } else if (ch === '"') inString = true;
        else if (ch === '{' || ch === '[') {
          if (++depth > max) return true;
        } else if (ch === '}' || ch === ']') depth--;
      }
      return false;
    };
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('{', '}', '[', ']', '"', '\\', 'a', ','), { maxLength: 40 }),
        fc.integer({ min: 0, max: 8 }),
        (chars, max) => {
          const text = chars.join('');
          expect(jsonNestsDeeperThan(text, max)).toBe(scan(text, max));
        },
      ),
      { seed: 9, numRuns: 3000 },
    );
  });

  it('agrees with a direct check on any string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        // Round-tripping through UTF-8 changes exactly the strings with a lone surrogate.
        const expected = s.includes('\u0000') || Buffer.from(s, 'utf8').toString('utf8') !== s;
        expect(isUnsafeText(s)).toBe(expected);
        expect(findUnsafeJson({ s }) !== undefined).toBe(expected);
      }),
      { seed: 8, numRuns: 500 },
    );
  });

  it('jsonTextIsSafe: a text it calls safe never parses to a NUL or lone surrogate (so the walk may be skipped)', () => {
    expect(jsonTextIsSafe('{"type":"request","body":{"a":[1,"b"]}}')).toBe(true);
    expect(jsonTextIsSafe('{"a":"\\u0000"}')).toBe(false);
    expect(jsonTextIsSafe('{"a":"\\ud800"}')).toBe(false);
    expect(jsonTextIsSafe('{"\\u0041":1}')).toBe(false); // any escape: walk
    expect(jsonTextIsSafe('{"a":"\ud800"}')).toBe(false); // a raw lone surrogate in the text
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), fc.string({ unit: 'grapheme' }), (value, s) => {
        for (const text of [JSON.stringify(value), JSON.stringify({ s, [s]: value })]) {
          if (jsonTextIsSafe(text)) expect(findUnsafeJson(JSON.parse(text))).toBeUndefined();
        }
      }),
      { numRuns: 500 },
    );
    // Texts with NULs and lone surrogates (escaped or raw) are never called safe.
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        const text = JSON.stringify({ s });
        if (findUnsafeJson(JSON.parse(text))) expect(jsonTextIsSafe(text)).toBe(false);
      }),
      { numRuns: 500 },
    );
  });
});
