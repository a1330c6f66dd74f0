import type { Migration } from '@runt/sql';

/** The control plane's own tables (pairing codes come from `@runt/pairing`). */
export const controlPlaneMigrations: Migration[] = [
  {
    id: 'cp_0001_workstations',
    sql: `
create table workstations (
  id text primary key,
  display_name text not null,
  hostname text,
  cpu_count integer,
  memory_bytes bigint,
  max_runs integer,
  runtimes jsonb not null default '[]',
  labels jsonb not null default '{}',
  agent_version text,
  listening boolean not null default false,
  draining boolean not null default false,
  pairing_id text,
  last_seen_at timestamptz,
  registered_at timestamptz,
  created_at timestamptz not null default now()
);
create table credentials (
  id text primary key,
  kind text not null check (kind in ('admin', 'workstation')),
  token_hash text not null unique,
  workstation_id text references workstations(id),
  created_at timestamptz not null default now(),
  last_used_at timestamptz,
  revoked_at timestamptz
);
create index credentials_workstation_idx on credentials (workstation_id);
`,
  },
];
