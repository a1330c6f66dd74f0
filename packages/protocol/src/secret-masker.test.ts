import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SecretMasker } from './secret-masker.js';

/** Feeds `chunks` through one masker: the text it lets out, and the raw characters it said it covered after each push. */
function run(secrets: string[], chunks: string[]): { text: string; raws: number[] } {
  const m = new SecretMasker(secrets);
  let text = '';
  const raws: number[] = [];
  for (const c of chunks) {
    const out = m.push(c);
    text += out.text;
    raws.push(out.raw);
  }
  const end = m.end();
  return { text: text + end.text, raws: [...raws, end.raw] };
}

/** Splits `s` at the given cut points (any order, duplicates allowed). */
function split(s: string, cuts: number[]): string[] {
  const at = [...new Set(cuts.map((c) => c % (s.length + 1)))].sort((a, b) => a - b);
  const out: string[] = [];
  let from = 0;
  for (const c of at) {
    out.push(s.slice(from, c));
    from = c;
  }
  out.push(s.slice(from));
  return out;
}

describe('SecretMasker', () => {
  it('masks a value whole, and split across two chunks', () => {
    expect(run(['hunter2'], ['pw: hunter2\n']).text).toBe('pw: ***\n');
    expect(run(['hunter2'], ['pw: hun', 'ter2\n']).text).toBe('pw: ***\n');
    expect(run(['hunter2'], ['pw: h', 'u', 'n', 't', 'e', 'r', '2', '\n']).text).toBe('pw: ***\n');
  });

  it('holds back only what could start a value, and lets it out at the end', () => {
    const m = new SecretMasker(['hunter2']);
    expect(m.push('say hun')).toEqual({ text: 'say ', raw: 4 });
    expect(m.push('gry\n')).toEqual({ text: 'hungry\n', raw: 7 });
    expect(m.push('ends with hunt')).toEqual({ text: 'ends with ', raw: 10 });
    expect(m.end()).toEqual({ text: 'hunt', raw: 4 });
  });

  it('masks overlapping values as one, and a longer value that extends a shorter one', () => {
    expect(run(['abc', 'bcdef'], ['xabcdefy']).text).toBe('x***y');
    expect(run(['abc', 'abcdef'], ['1 abc', 'def 2']).text).toBe('1 *** 2');
    expect(run(['abc', 'abcdef'], ['1 abc', ' 2']).text).toBe('1 *** 2');
  });

  it('passes output through untouched without secrets (empty values ignored)', () => {
    const m = new SecretMasker(['']);
    expect(m.active).toBe(false);
    expect(m.push('abc')).toEqual({ text: 'abc', raw: 3 });
  });

  it('property: however the output is cut, no value leaks, the text equals the unsplit masking, and raw counts add up', () => {
    const alphabet = fc.constantFrom('a', 'b', 'c', 'x', '\n');
    const word = fc.array(alphabet, { minLength: 1, maxLength: 6 }).map((a) => a.join(''));
    fc.assert(
      fc.property(
        fc.array(word, { minLength: 1, maxLength: 3 }),
        fc.array(fc.oneof(alphabet, word), { maxLength: 40 }).map((a) => a.join('')),
        fc.array(fc.nat(), { maxLength: 8 }),
        (secrets, output, cuts) => {
          const whole = run(secrets, [output]);
          const chunked = run(secrets, split(output, cuts));
          for (const s of secrets) expect(chunked.text.replaceAll('***', '\u0000')).not.toContain(s);
          expect(chunked.text).toBe(whole.text);
          expect(chunked.raws.reduce((a, b) => a + b, 0)).toBe(output.length);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
