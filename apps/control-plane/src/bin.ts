#!/usr/bin/env node
import { loadConfig } from './config.js';
import { connectCommand } from '@runt/protocol';
import { drainStdout } from './logger.js';
import { startControlPlane } from './server.js';
import { controlPlaneUsage } from './usage.js';

const SHUTDOWN_GRACE_MS = 10_000;

// Human lines go to stderr; stdout carries the JSON logs.
const say = (line: string) => process.stderr.write(`${line}\n`);

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h') || args[0] === 'help') {
    process.stdout.write(controlPlaneUsage());
    return;
  }
  if (args.length > 0) {
    say(
      `runt-control-plane: unknown argument ${args[0]} (it is configured by environment variables; see --help)`,
    );
    process.exit(2);
  }
  // As PID 1 in a container node ignores a signal it has no handler for: one that arrives while
  // the database opens and migrates ends the process (128 + signal number) as soon as the event
  // loop turns (a fresh PGlite's first initialisation holds it for seconds).
  // One listener per signal for the process's whole life, dispatching on the phase: swapping
  // listeners would close and reopen libuv's signal handle, and a signal that arrives in between
  // (a supervisor's SIGTERM sent the moment the banner is read) would be dropped — the process
  // would then never stop.
  let onSignal: (signal: NodeJS.Signals) => void = (signal) => process.exit(signal === 'SIGINT' ? 130 : 143);
  process.on('SIGTERM', (signal) => onSignal(signal));
  process.on('SIGINT', (signal) => onSignal(signal));
  const config = loadConfig();
  const cp = await startControlPlane(config);
  // A live code only on the first start (no code was ever minted here) or when asked: printed on
  // every start it would sit in logs, valid for 10 minutes, each time the service restarts.
  const firstStart = (await cp.db.query('select 1 from pairing_codes limit 1')).rows.length === 0;
  const code =
    firstStart || process.env.RUNT_PRINT_PAIRING_CODE === '1'
      ? await cp.pairing.mint({ createdBy: 'startup' })
      : undefined;
  say('');
  say(
    `runt control plane listening on ${cp.url} (database: ${cp.db.backend === 'pglite' ? `embedded PGlite in ${config.dataDir}` : 'Postgres'})`,
  );
  say(`panel: ${cp.publicUrl}/ (sign in with the admin token)`);
  say(
    cp.adminTokenPath
      ? `admin token: ${cp.adminTokenPath} (export RUNT_ADMIN_TOKEN=$(cat ${cp.adminTokenPath}))`
      : config.adminToken
        ? 'admin token: from RUNT_ADMIN_TOKEN'
        : 'admin token: minted by the first replica on this database (its data dir); set RUNT_ADMIN_TOKEN on every replica',
  );
  if (code) {
    say(`pair a workstation (code valid 10 minutes, single use):`);
    say(`  ${connectCommand(cp.publicUrl, code.code)}`);
  } else {
    say('pair a workstation with a fresh code (RUNT_PRINT_PAIRING_CODE=1 prints one at start):');
    say('  runt admin pairing-code');
  }
  say('');

  // Shutdown always ends within SHUTDOWN_GRACE_MS: the main thread never blocks on a full stdout
  // (see createLogger), so the timer below fires even when closing hangs. A second signal
  // exits at once.
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    cp.logger.info({ signal }, 'shutting down');
    const force = setTimeout(() => process.exit(1), SHUTDOWN_GRACE_MS);
    force.unref();
    cp.close().then(
      () => drainStdout(2_000).then(() => process.exit(0)),
      () => process.exit(1),
    );
  };
  onSignal = stop;
}

main().catch((e: unknown) => {
  say(`runt-control-plane: ${e instanceof Error ? e.message : String(e)}`);
  if (process.env.DEBUG?.includes('runt') && e instanceof Error) say(e.stack ?? '');
  process.exit(1);
});
