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
  {
    // Runs and everything that hangs off them. `position` orders the queue and list pages;
    // partial indexes match the scheduler's, the sweeper's and the capacity queries.
    id: 'cp_0002_runs',
    sql: `
create table runs (
  id text primary key,
  position bigserial not null unique,
  status text not null check (status in ('queued', 'offered', 'accepted', 'running', 'completed', 'failed', 'cancelled', 'blocked')),
  runtime text not null,
  image text,
  command jsonb not null default '[]',
  env jsonb not null default '{}',
  workdir text,
  ready_when jsonb,
  placement_workstation_id text,
  placement_labels jsonb not null default '{}',
  cpus double precision,
  memory_bytes bigint,
  bundle_sha256 text,
  max_attempts integer not null default 3,
  attempt integer not null default 1,
  workstation_id text references workstations(id),
  lease_holder text,
  fencing_token bigint,
  exit_code integer,
  failure_kind text,
  failure_message text,
  cancel_requested boolean not null default false,
  idempotency_key text,
  next_event_seq bigint not null default 1,
  next_command_seq bigint not null default 1,
  created_at timestamptz not null default now(),
  offered_at timestamptz,
  accepted_at timestamptz,
  started_at timestamptz,
  finished_at timestamptz
);
create index runs_queued_idx on runs (position) where status = 'queued';
create index runs_offered_idx on runs (offered_at) where status = 'offered';
create index runs_active_by_workstation_idx on runs (workstation_id) where status in ('offered', 'accepted', 'running');
create index runs_workstation_position_idx on runs (workstation_id, position);
create index runs_status_position_idx on runs (status, position);
create unique index runs_idempotency_key_idx on runs (idempotency_key) where idempotency_key is not null;
create table run_events (
  run_id text not null references runs(id) on delete cascade,
  seq bigint not null,
  type text not null,
  payload jsonb not null,
  at timestamptz not null default now(),
  primary key (run_id, seq)
);
create table run_commands (
  id text primary key,
  run_id text not null references runs(id) on delete cascade,
  seq bigint not null,
  payload jsonb not null,
  state text not null check (state in ('pending', 'acked', 'completed', 'failed', 'cancelled')),
  exit_code integer,
  message text,
  created_at timestamptz not null default now(),
  acked_at timestamptz,
  finished_at timestamptz,
  unique (run_id, seq)
);
create table bundles (
  sha256 text primary key,
  size_bytes bigint not null,
  data bytea not null,
  created_at timestamptz not null default now()
);
`,
  },
  {
    // The agent link: which replica holds a workstation's link, and whether it just dropped
    // (status derives `offline` from 'dropped' at once, without waiting for the 90 s window).
    id: 'cp_0003_workstation_links',
    sql: `
alter table workstations add column link_state text not null default 'none' check (link_state in ('none', 'connected', 'dropped'));
alter table workstations add column link_replica text;
alter table workstations add column link_connected_at timestamptz;
`,
  },
  {
    // Panel sign-in sessions: only the SHA-256 of the cookie value is stored; a session dies
    // with its expiry or with the admin credential it was opened with.
    id: 'cp_0004_panel_sessions',
    sql: `
create table panel_sessions (
  token_hash text primary key,
  credential_id text not null references credentials(id),
  created_at timestamptz not null default now(),
  expires_at timestamptz not null
);
create index panel_sessions_expires_idx on panel_sessions (expires_at);
`,
  },
  {
    // When a sweep last ran (any replica): a gap longer than the outage threshold means nobody
    // could renew leases, and the time is credited to them (issue 8, defect 5).
    id: 'cp_0005_sweep_clock',
    sql: `create table sweep_clock (id integer primary key check (id = 1), swept_at timestamptz not null);`,
  },
  {
    // Run time limits (issue 12): seconds once started, and seconds a run may wait unplaced.
    id: 'cp_0100_run_timeouts',
    sql: `
alter table runs add column timeout_s integer;
alter table runs add column queue_timeout_s integer;
`,
  },
  {
    // Automatic retry (issue 12): the run's policy, when a queued retry may be placed, and the
    // attempts that ended without ending the run (the last attempt is the run row itself).
    id: 'cp_0101_run_retry',
    sql: `
alter table runs add column retry jsonb;
alter table runs add column not_before timestamptz;
create table run_attempts (
  run_id text not null references runs(id) on delete cascade,
  attempt integer not null,
  status text not null,
  workstation_id text,
  exit_code integer,
  failure_kind text,
  failure_message text,
  accepted_at timestamptz,
  started_at timestamptz,
  finished_at timestamptz not null,
  first_event_seq bigint not null,
  last_event_seq bigint not null,
  retry_at timestamptz,
  primary key (run_id, attempt)
);
`,
  },
  {
    // Bounded panel reads (issue 11): counts per status under a workstation or runtime filter
    // stop after COUNT_CAP index entries, and the runtime filter's choices are a skip scan.
    id: 'cp_0102_panel_reads',
    sql: `
create index runs_workstation_status_idx on runs (workstation_id, status);
create index runs_runtime_status_idx on runs (runtime, status);
`,
  },
  {
    // Secret env entries (issue 12): sealed values by name (AES-256-GCM, see runs/secret-box.ts),
    // never plaintext; null for a run without secrets.
    id: 'cp_0103_secret_env',
    sql: `alter table runs add column secret_env jsonb;`,
  },
  {
    // Issue 9: every status change of a run is a non-HOT update that adds an entry to each of
    // the runs table's indexes whose predicate holds. The active runs per workstation (the
    // scheduler's capacity, pending reasons, bundle reads) are found as well, or better, through
    // `runs_workstation_status_idx` (workstation_id, status = any(...)) and the fleet's grouped
    // count through `runs_status_position_idx`: this one only cost writes (docs/benchmarks.md).
    id: 'cp_0104_drop_covered_runs_index',
    sql: `drop index if exists runs_active_by_workstation_idx;`,
  },
  {
    // Issue 9: each status change of a run adds an entry to every index of `runs` whose
    // predicate holds (no status change is a HOT update), and a run goes through three or four
    // (insert, claim, start, finish). Each index now holds only the rows some read needs:
    // - runs holding a slot (offered, accepted, running: capacity, pending reasons, resends,
    //   the sweeper's time-outs, the panel's in-use counts) by workstation: a few per
    //   workstation, read whole when no workstation is given;
    // - ended runs by status, and by workstation and status, newest first (lists and capped
    //   counts of the panel and the API); queued runs are in `runs_queued_idx`, and have no
    //   workstation (every move to `queued` clears it);
    // - queued and ended runs by runtime and status (a fresh submit's "older queued run" probe,
    //   the runtime filter's lists and counts, the known runtimes' skip scan).
    // A list without a status filter reads each status through its own index and merges them
    // (run-store.ts `listIdsSql`), so neither the position's unique index nor
    // (workstation_id, position) is needed: a claim now writes 2 index entries (was 6), a
    // finish 4 (was 6), an insert 3 (was 7). See docs/runs.md, _The indexes of `runs`_.
    id: 'cp_0105_runs_indexes_by_status',
    sql: `
alter table runs drop constraint runs_position_key;
drop index runs_workstation_position_idx;
drop index runs_status_position_idx;
drop index runs_workstation_status_idx;
drop index runs_runtime_status_idx;
create index runs_workstation_status_idx on runs (workstation_id, status) where status in ('offered', 'accepted', 'running');
create index runs_status_position_idx on runs (status, position) where status not in ('queued', 'offered', 'accepted', 'running');
create index runs_workstation_ended_idx on runs (workstation_id, status, position)
  where workstation_id is not null and status not in ('queued', 'offered', 'accepted', 'running');
create index runs_runtime_status_idx on runs (runtime, status, position) where status not in ('offered', 'accepted', 'running');
`,
  },
  {
    // Issue 9: `run_events` without its foreign key. Every event write takes its run from a
    // row of `runs` it updated (or locked) in the same statement or transaction, so the key's
    // check (a `select … for key share` on `runs` per event row: ~10 µs each on PGlite, ~7 µs
    // of server CPU on Postgres) proved nothing the statement had not. Runs are never
    // deleted by runt itself; whoever deletes them still loses their events, now through one
    // statement-level trigger per delete instead of the key's cascade (docs/runs.md, _Events_).
    id: 'cp_0106_run_events_without_fk',
    sql: `
alter table run_events drop constraint run_events_run_id_fkey;
create function runs_deleted_drop_events() returns trigger language plpgsql as $$ begin delete from run_events e using runs_gone g where e.run_id = g.id; return null; end $$;
create trigger runs_deleted_drop_events after delete on runs referencing old table as runs_gone
  for each statement execute function runs_deleted_drop_events();
`,
  },
  {
    // Issue 9: `runs.workstation_id` without its foreign key to `workstations`. Every write of
    // it (an offer, a claim, claim on offer) takes the id from a row of `workstations` the same
    // statement or transaction read, and runt never deletes workstations, so the key's check —
    // a trigger running `select … for key share` on `workstations` per run placed, 20,002 of
    // them in a 20,000-run bench — proved nothing the statement had not (docs/runs.md,
    // _Claim on offer_). `credentials.workstation_id` keeps its key (no writes per run).
    id: 'cp_0107_runs_workstation_without_fk',
    sql: `alter table runs drop constraint if exists runs_workstation_id_fkey;`,
  },
  {
    // Issue 9: runs an agent takes ahead of a free slot (`--prefetch`, graphile-worker's local
    // queue): the scheduler offers up to `max_runs + prefetch` at once (placement.ts, SLOTS_SQL).
    id: 'cp_0108_workstation_prefetch',
    sql: `alter table workstations add column prefetch integer not null default 0;`,
  },
];
