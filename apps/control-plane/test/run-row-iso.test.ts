import { describe, expect, it } from 'vitest';
import { iso } from '../src/runs/run-row.js';

// `iso` rewrites Postgres' UTC JSON timestamps without a `Date` (issue 9): it must answer what
// `new Date(v).toISOString()` answers for every text, Postgres' own and any other.
const viaDate = (v: Date | string): string => new Date(v).toISOString();

function pgJsonText(ms: number, micros: number): string {
  const fraction = String(micros).padStart(6, '0').replace(/0+$/, '');
  return `${new Date(ms).toISOString().slice(0, 19)}${fraction ? `.${fraction}` : ''}+00:00`;
}

describe('iso', () => {
  it('answers as Date does for Postgres UTC JSON texts of every fraction length', () => {
    let seed = 9;
    const next = (n: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed % n;
    };
    const texts = [
      '2026-12-02T22:27:01+00:00',
      '2026-12-02T22:27:01.1+00:00',
      '2026-12-02T22:27:01.12+00:00',
      '2026-12-02T22:27:01.123+00:00',
      '2026-12-02T22:27:01.1234+00:00',
      '2026-12-02T22:27:01.999999+00:00',
      '0001-01-01T00:00:00.000001+00:00',
      '9999-12-31T23:59:59.9999+00:00',
    ];
    for (let i = 0; i < 5_000; i++) {
      // years 1..9999, any microsecond
      const ms = Date.parse('0001-01-01T00:00:00Z') + next(2_147_483_647) * 140_000 + next(1000) * 1000;
      texts.push(pgJsonText(ms, next(10) === 0 ? next(10) * 100_000 : next(1_000_000)));
    }
    for (const t of texts) expect(iso(t), t).toBe(viaDate(t));
  });

  it('reads any other text, and a Date, through Date', () => {
    const others = [
      '2026-12-02T22:27:01.123456+01:00',
      '2026-12-02 22:27:01.123456+00',
      '2026-12-02T22:27:01.123Z',
      '2026-12-02T22:27:01.1234567+00:00',
      '+012026-12-02T22:27:01+00:00',
      '2026-12-02',
    ];
    for (const t of others) expect(iso(t), t).toBe(viaDate(t));
    const d = new Date(Date.UTC(2026, 11, 2, 22, 27, 1, 5));
    expect(iso(d)).toBe('2026-12-02T22:27:01.005Z');
    expect(iso(null)).toBeNull();
    expect(() => iso('not a time')).toThrow(RangeError);
  });
});
