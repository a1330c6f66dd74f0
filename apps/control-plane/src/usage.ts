/**
 * `runt-control-plane --help`: what the binary takes. It is configured by environment
 * variables only (as `loadConfig` reads them); `usage.test` checks that every variable
 * `loadConfig` reads is listed here.
 */
export const ENV_HELP: ReadonlyArray<readonly [name: string, help: string]> = [
  ['RUNT_HOST', 'address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)'],
  ['RUNT_PORT', 'port to listen on (default 8787; 0 picks a free one)'],
  ['DATABASE_URL', 'Postgres connection string; unset: embedded PGlite in RUNT_DATA_DIR'],
  [
    'RUNT_DB_CONNECT_TIMEOUT_MS',
    'Postgres: opening a connection fails after this many ms (default 5000; 0: no bound)',
  ],
  ['RUNT_DATA_DIR', 'data directory: PGlite database, admin token, lock (default ./.runt)'],
  ['RUNT_ADMIN_TOKEN', 'the admin token (default: minted once, written 0600 to the data dir)'],
  ['RUNT_PUBLIC_URL', 'URL workstations and browsers reach this control plane at'],
  ['RUNT_BODY_LIMIT', 'largest request body, in bytes'],
  ['RUNT_BUNDLE_LIMIT', 'largest bundle upload, in bytes (default 64 MiB)'],
  ['RUNT_LOG_LEVEL', 'fatal, error, warn, info (default), debug, trace or silent'],
  ['RUNT_SCHEDULER_TICK_MS', 'periodic scheduling pass, ms (default 1000)'],
  ['RUNT_SWEEP_INTERVAL_MS', 'how often expired leases and unclaimed offers are swept, ms (default 1000)'],
  ['RUNT_OFFER_TIMEOUT_MS', 'an offer not claimed within this goes back to the queue, ms (default 30000)'],
  ['RUNT_LINK_PING_MS', 'idle agent links are pinged this often, ms (default 25000)'],
  ['RUNT_EVENT_POLL_MS', 'live event streams re-read the database this often, ms (default 1000)'],
  ['RUNT_REPLICA_ID', 'names this replica (default: random per start)'],
  ['RUNT_RUN_TIMEOUT_S', 'timeout_s of a run that names none, seconds (default: no limit)'],
  ['RUNT_QUEUE_TIMEOUT_S', 'queue_timeout_s of a run that names none, seconds (default: no limit)'],
  [
    'RUNT_RUN_TIMEOUT_GRACE_S',
    'seconds past timeout_s before the sweeper fails a run its agent did not stop (default 60)',
  ],
  [
    'RUNT_SECRET_KEY',
    'key sealing secret env entries at rest: base64 of 32 bytes (PGlite default: generated once, 0600 in the data dir; Postgres: required for secret env, the same on every replica)',
  ],
  ['RUNT_SECRET_KEY_FILE', 'a file holding RUNT_SECRET_KEY (0600)'],
  ['RUNT_PRINT_PAIRING_CODE', '1: print a fresh pairing code at every start, not only the first'],
];

/**
 * The `--help` text of `runt-control-plane`.
 *
 * @example
 * process.stdout.write(controlPlaneUsage());
 */
export function controlPlaneUsage(): string {
  const width = Math.max(...ENV_HELP.map(([name]) => name.length));
  return [
    'Usage: runt-control-plane',
    '',
    'Starts the runt control plane: the API, the panel, the agent link, the scheduler.',
    'It takes no arguments; it is configured by environment variables:',
    '',
    ...ENV_HELP.map(([name, help]) => `  ${name.padEnd(width)}  ${help}`),
    '',
    'Options:',
    '  -h, --help  print this and exit',
    '',
    'Example:',
    '  RUNT_PORT=8787 RUNT_DATA_DIR=./.runt npx runt-control-plane',
    '',
  ].join('\n');
}
