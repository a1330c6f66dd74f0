import type { Migration } from '@runt/sql';

/**
 * The tables of the SQL pairing store. Run them yourself before `createSqlPairingStore`:
 * `await migrate(db, pairingMigrations)`. `pairing_attempts` records failed redeems for rate
 * limiting (one row per failure, pruned as they age out).
 */
export const pairingMigrations: Migration[] = [
  {
    id: 'pairing_0001_codes',
    sql: `
create table pairing_codes (
  id text primary key,
  code_hash text not null unique,
  created_by text not null,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  redeemed_at timestamptz,
  redeemed_by text
);
create index pairing_codes_expires_at on pairing_codes (expires_at);
create table pairing_attempts (
  id bigint generated always as identity primary key,
  client_address text not null,
  failed_at timestamptz not null default now()
);
create index pairing_attempts_address on pairing_attempts (client_address, failed_at);
create index pairing_attempts_failed_at on pairing_attempts (failed_at);
`,
  },
  {
    // Failures also count per code prefix (the first 4 symbols guessed), replacing the global limit.
    id: 'pairing_0002_attempt_prefix',
    sql: `
alter table pairing_attempts add column code_prefix text;
create index pairing_attempts_prefix on pairing_attempts (code_prefix, failed_at);
`,
  },
];
