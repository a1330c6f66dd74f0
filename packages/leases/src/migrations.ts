import type { Migration } from '@runt/sql';

/**
 * The schema of the SQL lease store, for `migrate(db, leaseMigrations)` from `@runt/sql`. The
 * store never migrates itself: the application runs migrations once at start, next to its own.
 * A row is kept after release (holder nulled) so the fencing token of a resource never goes back.
 *
 * @example
 * import { migrate } from '@runt/sql';
 * await migrate(db, leaseMigrations);
 */
export const leaseMigrations: Migration[] = [
  {
    id: 'leases_0001_leases',
    sql: `create table if not exists leases (
  resource text primary key,
  holder text,
  fencing_token bigint not null check (fencing_token > 0),
  expires_at timestamptz not null,
  acquired_at timestamptz not null,
  renewed_at timestamptz
);
create index if not exists leases_held_expires_at_idx on leases (expires_at) where holder is not null;`,
  },
];
