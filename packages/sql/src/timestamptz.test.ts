import pg from 'pg';
import { describe, expect, it } from 'vitest';
import './postgres.js';
import { createTestDatabase } from './testing.js';
import { parseTimestamptz } from './timestamptz.js';

// postgres-date, as node-postgres registers it (a fresh type set, untouched by postgres.ts)
const general = (pg.types as unknown as { getTypeParser: (oid: number) => (s: string) => unknown })
  .getTypeParser;
const postgresDate = (() => {
  const fresh = new (
    pg as unknown as { TypeOverrides: new () => { getTypeParser: typeof general } }
  ).TypeOverrides();
  return fresh.getTypeParser(1184);
})();

const same = (text: string) => {
  const a = parseTimestamptz(text);
  const b = postgresDate(text);
  expect(a instanceof Date ? a.getTime() : a, text).toEqual(b instanceof Date ? b.getTime() : b);
};

describe('parseTimestamptz', () => {
  it('is the timestamptz parser of the Postgres pool', () => {
    expect(general(1184)).toBe(parseTimestamptz);
  });

  it('reads a UTC timestamptz as postgres-date does, fraction cut to milliseconds', () => {
    for (let i = 0; i < 2000; i++) {
      const iso = new Date(Date.UTC(1970, 0, 1) + Math.floor(Math.random() * 2 ** 42)).toISOString();
      const base = iso.slice(0, 19).replace('T', ' ');
      const digits = String(Math.floor(Math.random() * 1e6)).padStart(6, '0');
      same(`${base}+00`);
      same(`${base}.${digits.slice(0, 1 + (i % 6))}+00`);
    }
    expect((parseTimestamptz('2026-12-01 20:48:36.851916+00') as Date).toISOString()).toBe(
      '2026-12-01T20:48:36.851Z',
    );
    expect((parseTimestamptz('2026-12-01 20:48:36.5+00') as Date).toISOString()).toBe(
      '2026-12-01T20:48:36.500Z',
    );
  });

  it('leaves every other form to postgres-date', () => {
    for (const text of [
      'infinity',
      '-infinity',
      '2026-12-01 20:48:36.851416+05:30',
      '2026-12-01 20:48:36-08',
      '0050-03-04 01:02:03.25+00',
      '0001-01-01 00:00:00+00 BC',
      '12026-12-01 20:48:36+00',
    ])
      same(text);
  });

  it('gives what the server sends, in UTC and in another time zone', async () => {
    const t = await createTestDatabase('postgres');
    try {
      const sql = `select '2026-12-01 20:48:36.851416+00'::timestamptz as a, '1999-01-02 03:04:05+00'::timestamptz as b,
                          'infinity'::timestamptz as c, (extract(epoch from '2026-12-01 20:48:36.851416+00'::timestamptz) * 1000)::float8 as ms`;
      type Row = { a: Date; b: Date; c: number; ms: number };
      const utc = (await t.db.query<Row>(sql)).rows[0]!;
      const kolkata = await t.db.transaction(async (tx) => {
        await tx.query(`set local timezone = 'Asia/Kolkata'`);
        return (await tx.query<Row>(sql)).rows[0]!;
      });
      for (const r of [utc, kolkata]) {
        expect(r.a.getTime()).toBe(Math.floor(r.ms));
        expect(r.b.toISOString()).toBe('1999-01-02T03:04:05.000Z');
        expect(r.c).toBe(Infinity);
      }
    } finally {
      await t.dispose();
    }
  });
});
