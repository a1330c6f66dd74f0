import pg from 'pg';

/** node-postgres' own `timestamptz` parser (`postgres-date`): every form the server may send. */
const general = pg.types.getTypeParser(1184, 'text') as (text: string) => Date | number | null;

const digit = (s: string, i: number) => s.charCodeAt(i) - 48;
const two = (s: string, i: number) => digit(s, i) * 10 + digit(s, i + 1);

/**
 * A `timestamptz` as a `Date`, as node-postgres parses it, with the server's text in a UTC
 * session (`2026-12-01 20:48:36.851416+00`, or without the fraction) read by position: four
 * such columns come back with every run a pass places, and `postgres-date`'s regular
 * expressions were 2 % of the control plane's CPU on the Postgres drain (issue 9). Any other
 * form (another time zone, a BC or five-digit year, `infinity`) goes to `postgres-date`. The
 * fraction is cut to milliseconds, as `postgres-date` does.
 *
 * @example
 * parseTimestamptz('2026-12-01 20:48:36.851416+00').toISOString(); // '2026-12-01T20:48:36.851Z'
 */
export function parseTimestamptz(text: string): Date | number | null {
  const n = text.length;
  if (
    n >= 22 &&
    n <= 29 &&
    n !== 23 &&
    text.charCodeAt(n - 3) === 43 && // +
    text.charCodeAt(n - 2) === 48 &&
    text.charCodeAt(n - 1) === 48 &&
    text.charCodeAt(4) === 45 &&
    text.charCodeAt(7) === 45 &&
    text.charCodeAt(10) === 32 &&
    text.charCodeAt(13) === 58 &&
    text.charCodeAt(16) === 58 &&
    (n === 22 || text.charCodeAt(19) === 46) &&
    text.charCodeAt(0) !== 48 // a year below 1000: Date.UTC's 0–99 rule, left to postgres-date
  ) {
    let ms = 0;
    // the fraction's first three digits (`.5` is 500 ms)
    for (let i = 20, scale = 100; i < n - 3 && scale >= 1; i++, scale /= 10) ms += digit(text, i) * scale;
    const t = Date.UTC(
      digit(text, 0) * 1000 + digit(text, 1) * 100 + two(text, 2),
      two(text, 5) - 1,
      two(text, 8),
      two(text, 11),
      two(text, 14),
      two(text, 17),
      ms,
    );
    if (Number.isFinite(t)) return new Date(t);
  }
  return general(text);
}
