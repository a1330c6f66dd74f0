import { randomUUID } from 'node:crypto';
import { chmod, mkdir, rename, writeFile } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { createAdaptorServer, type ServerType } from '@hono/node-server';
import { createSqlLeaseStore, leaseMigrations, type LeaseStore } from '@runt/leases';
import type { DestinationStream, Logger } from 'pino';
import {
  createSqlPairingStore,
  pairingMigrations,
  type AttemptLimits,
  type PairingStore,
} from '@runt/pairing';
import { countStatements, migrate, openDatabase, type Database } from '@runt/sql';
import { lockDataDir } from './data-dir-lock.js';
import { LINK_CLOSE_CODES } from '@runt/protocol';
import { parseToken } from '@runt/transport-auth';
import { createRequire } from 'node:module';
import { createApp } from './app.js';
import { createMetrics, runPathMetrics } from './metrics.js';
import type { ControlPlaneConfig } from './config.js';
import { createLogger } from './logger.js';
import { controlPlaneMigrations } from './migrations.js';
import { EventWaiters } from './event-waiters.js';
import { LinkRegistry } from './link/link-registry.js';
import { LinkRelay } from './link/link-relay.js';
import { LinkServer, type LinkServerOptions } from './link/link-server.js';
import { RunLifecycle } from './runs/run-lifecycle.js';
import { createRunSignals } from './runs/run-signals.js';
import { freshOffer, Scheduler } from './runs/scheduler.js';
import { BundleStore } from './stores/bundle-store.js';
import { CommandStore } from './runs/command-store.js';
import { EventStore } from './runs/event-store.js';
import { RunStore } from './runs/run-store.js';
import { NotificationBus } from './notifications/bus.js';
import { CredentialStore } from './stores/credential-store.js';
import { PrincipalCache } from './stores/principal-cache.js';
import { WorkstationStore } from './stores/workstation-store.js';
import { Sweeper } from './runs/sweeper.js';
import { loadSecretBox } from './runs/secret-box.js';

/**
 * The listening socket's accept queue (connections the kernel completed and the process has not
 * accepted yet); the kernel caps it at `net.core.somaxconn` (4096 on the bench's machine). Node's
 * default is 511: a fleet re-linking after a restart filled it while the control plane was busy
 * (`ss -ltn` 512/511), the overflowing connects were reset or their SYNs dropped, and those
 * agents waited out their backoff (up to 15 s) instead of a `Retry-After` (issue 9).
 */
export const LISTEN_BACKLOG = 4096;

export interface StartOptions {
  /** Use this database instead of opening one from the config (tests). */
  db?: Database;
  /** Links opening at once at most (`LinkServerOptions.maxOpening`; default 256). */
  linkMaxOpening?: number;
  /** The pace shed link upgrades are told to come back at until one is measured (`LinkServerOptions.shedPacePerSecond`). */
  linkShedPacePerSecond?: number;
  /** How long after the start the shed pace is at least that (`LinkServerOptions.shedFloorMs`). */
  linkShedFloorMs?: number;
  /** Upgrades past `linkMaxOpening` held for a place (`LinkServerOptions.maxWaiting`; 0: shed at once). */
  linkMaxWaiting?: number;
  /** How long an upgrade may wait for a place (`LinkServerOptions.waitMaxMs`). */
  linkWaitMaxMs?: number;
  /** How long a silent link counts among those opening (`LinkServerOptions.openingMaxMs`). */
  linkOpeningMaxMs?: number;
  /** Each link's message and request budgets (`LinkServerOptions.messageRate`; tests set a tiny one). */
  linkMessageRate?: LinkServerOptions['messageRate'];
  logDestination?: DestinationStream;
  pairingLimits?: AttemptLimits;
}

export interface RunningControlPlane {
  /** Where it listens, e.g. http://127.0.0.1:8787 */
  url: string;
  /** RUNT_PUBLIC_URL or `url`: what connect commands name. */
  publicUrl: string;
  port: number;
  db: Database;
  logger: Logger;
  workstations: WorkstationStore;
  credentials: CredentialStore;
  /** Resolves tokens; `stats()` shows the credential cache. */
  principals: PrincipalCache;
  pairing: PairingStore;
  runs: RunStore;
  leases: LeaseStore;
  scheduler: Scheduler;
  sweeper: Sweeper;
  /** The Hono app being served (routes, `app.request()`). */
  app: ReturnType<typeof createApp>;
  /** The agent links this process holds. */
  links: LinkRegistry;
  /** Names this process in `workstations.link_replica`. */
  replicaId: string;
  /** The file holding the generated admin token, when this process's data dir has one. */
  adminTokenPath?: string;
  /**
   * Stops the scheduler and sweeper, closes agent links with 1001, ends live event streams,
   * finishes in-flight requests and closes the database. Idempotent.
   */
  close(): Promise<void>;
}

/**
 * Opens the database, applies migrations, makes sure an admin credential exists, and serves
 * the API.
 *
 * @example
 * const cp = await startControlPlane(loadConfig({ RUNT_PORT: '0' }));
 * console.log(cp.url); await cp.close();
 */
export async function startControlPlane(
  config: ControlPlaneConfig,
  opts: StartOptions = {},
): Promise<RunningControlPlane> {
  const logger = createLogger(config.logLevel, opts.logDestination);
  if (config.adminToken && parseToken(config.adminToken)?.kind !== 'admin') {
    throw new Error('RUNT_ADMIN_TOKEN must be an admin token (rnt_adm_ followed by 43 base64url characters)');
  }
  const dataDir = resolvePath(config.dataDir);
  // Embedded PGlite: one process per data dir, checked before the database is opened.
  const lock = !opts.db && !config.databaseUrl ? lockDataDir(dataDir) : undefined;
  let db: Database;
  try {
    db =
      opts.db ??
      (await openDatabase({
        databaseUrl: config.databaseUrl,
        dataDir: join(dataDir, 'db'),
        connectMs: config.dbConnectTimeoutMs,
      }));
  } catch (e) {
    lock?.release();
    throw e;
  }
  try {
    await migrate(db, [...pairingMigrations, ...leaseMigrations, ...controlPlaneMigrations]);
  } catch (e) {
    if (!opts.db) await db.close();
    lock?.release();
    throw e;
  }
  // Every statement from here on is counted (`runt_cp_sql_statements_total`).
  db = countStatements(db, (c) => {
    runPathMetrics.sqlStatements.inc(c.statements);
    if (c.transactions) runPathMetrics.sqlTransactions.inc(c.transactions);
  });
  const bus = new NotificationBus(db, {
    onListenError: (channel, err, lost) =>
      logger.warn(
        { err: err?.message, channel },
        lost ? 'LISTEN connection lost; what it feeds is off until it is back' : 'LISTEN failed; retrying',
      ),
  });
  const principals = new PrincipalCache(db, bus);
  const credentials = new CredentialStore(db, principals);
  const workstations = new WorkstationStore(db, credentials);
  const pairing = createSqlPairingStore(db, opts.pairingLimits ? { limits: opts.pairingLimits } : {});

  const adminTokenPath = join(dataDir, 'admin-token');
  const fileMissing = !config.adminToken && !(await exists(adminTokenPath));
  // Embedded PGlite: the data dir is the database's, so a missing file means a lost token and a
  // new one is minted. Postgres: replicas share the database but not data dirs, so a replica
  // mints only when the database has no admin token yet (the first to start); the others say so.
  const { minted } = await credentials.ensureAdmin({
    ...(config.adminToken ? { token: config.adminToken } : {}),
    regenerate: fileMissing && db.backend !== 'postgres',
  });
  if (minted) await writeSecretFile(adminTokenPath, `${minted}\n`);
  const adminTokenHere = Boolean(minted) || (!config.adminToken && !fileMissing);
  if (!config.adminToken && !adminTokenHere) {
    logger.warn(
      'the admin token was minted by another replica on this database (in its data dir); set RUNT_ADMIN_TOKEN on every replica',
    );
  }

  // Secret env entries: the configured key; on the data dir (PGlite) one generated once beside
  // the database; on Postgres without a key none (submits with secrets are refused: replicas
  // that each generated a key would not open each other's).
  let secrets;
  try {
    secrets = await loadSecretBox({
      key: config.secretKey,
      keyFile: config.secretKeyFile,
      generateAt: db.backend === 'postgres' ? undefined : join(dataDir, 'secret-key'),
    });
  } catch (e) {
    if (!opts.db) await db.close();
    lock?.release();
    throw e;
  }
  if (!secrets)
    logger.warn(
      'no secret key (RUNT_SECRET_KEY or RUNT_SECRET_KEY_FILE): runs with secret env entries are refused (secrets-unavailable)',
    );

  const replicaId = config.replicaId ?? `cp_${randomUUID().slice(0, 8)}`;
  const leases = createSqlLeaseStore(db);
  const events = new EventStore(db);
  const commands = new CommandStore(db);
  const runs = new RunStore(db);
  const bundles = new BundleStore(db);
  const links = new LinkRegistry();
  const waiters = new EventWaiters();
  const shutdown = new AbortController();
  // Assigned once the relay (whose callback reads it later) and the signals exist.
  // eslint-disable-next-line prefer-const -- the relay's callback is built before the scheduler
  let scheduler: Scheduler | undefined;
  const relay = new LinkRelay({
    db,
    bus,
    links,
    runs,
    logger,
    scanMs: config.schedulerTickMs,
    onCapacityFreed: () => scheduler?.capacityFreedElsewhere(),
  });
  const signals = createRunSignals({ waiters, relay });
  scheduler = new Scheduler({
    db,
    logger,
    signals,
    replicaId,
    tickMs: config.schedulerTickMs,
    claimers: (workstationId) => links.claimerOf(workstationId),
    secrets,
    holdCancels: (runIds) => links.holdCancels(runIds),
  });
  signals.attachScheduler(scheduler);
  const placer = scheduler;
  const sweeper = new Sweeper({
    db,
    logger,
    leases,
    signals,
    intervalMs: config.sweepIntervalMs,
    offerTimeoutMs: config.offerTimeoutMs,
    timeoutGraceS: config.runTimeoutGraceS,
  });
  const lifecycle = new RunLifecycle({
    db,
    leases,
    runs,
    events,
    commands,
    signals,
    defaults: { timeoutS: config.runTimeoutS, queueTimeoutS: config.queueTimeoutS },
    secrets,
    placeFresh: (items) => freshOffer(items, replicaId),
    claimers: (workstationId) => links.claimerOf(workstationId),
    deliverClaimed: (workstationId, message, grants) => placer.deliverClaimed(workstationId, message, grants),
    holdCancels: (runIds) => links.holdCancels(runIds),
  });

  let publicUrl = config.publicUrl ?? '';
  const app = createApp({
    db,
    logger,
    pairing,
    workstations,
    credentials,
    principals,
    bodyLimitBytes: config.bodyLimitBytes,
    publicUrl: () => publicUrl,
    onRevoke: (credentialId) =>
      void links.closeCredential(credentialId, LINK_CLOSE_CODES.revoked, 'credential revoked'),
    fleetSignals: signals,
    metrics: createMetrics({ db, linkCount: () => links.size }),
    version: packageVersion(),
    runs: {
      runs,
      events,
      commands,
      bundles,
      lifecycle,
      signals,
      waiters,
      bundleLimitBytes: config.bundleLimitBytes,
      eventPollMs: config.eventPollMs,
      shutdown: shutdown.signal,
    },
  });

  // Before any renewal or report can arrive: an outage is credited to the leases it would
  // otherwise have expired (the first sweep comes only an interval after the start).
  await sweeper.creditOutage();
  const server: ServerType = await new Promise((resolveServer, reject) => {
    const s = createAdaptorServer({ fetch: app.fetch, hostname: config.host });
    s.listen({ port: config.port, host: config.host, backlog: LISTEN_BACKLOG }, () => resolveServer(s));
    s.once('error', (e) => {
      lock?.release();
      reject(e as Error);
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;
  publicUrl = (config.publicUrl ?? url).replace(/\/+$/, '');
  const linkServer = new LinkServer({
    server: server as Server,
    registry: links,
    resolve: principals.resolve.bind(principals),
    workstations,
    credentials,
    runs,
    lifecycle,
    signals,
    logger,
    replicaId,
    pingMs: config.linkPingMs,
    ...(opts.linkMaxOpening === undefined ? {} : { maxOpening: opts.linkMaxOpening }),
    ...(opts.linkShedPacePerSecond === undefined ? {} : { shedPacePerSecond: opts.linkShedPacePerSecond }),
    ...(opts.linkShedFloorMs === undefined ? {} : { shedFloorMs: opts.linkShedFloorMs }),
    ...(opts.linkMaxWaiting === undefined ? {} : { maxWaiting: opts.linkMaxWaiting }),
    ...(opts.linkWaitMaxMs === undefined ? {} : { waitMaxMs: opts.linkWaitMaxMs }),
    ...(opts.linkOpeningMaxMs === undefined ? {} : { openingMaxMs: opts.linkOpeningMaxMs }),
    ...(opts.linkMessageRate === undefined ? {} : { messageRate: opts.linkMessageRate }),
  });
  // Another replica's revoke: drop the cached principal (in the cache) and close its links here now.
  principals.onCredentialChanged = (credentialId) => {
    if (![...links.all()].some((l) => l.credentialId === credentialId)) return;
    void credentials
      .revokedAmong([credentialId])
      .then((revoked) => {
        for (const id of revoked) links.closeCredential(id, LINK_CLOSE_CODES.revoked, 'credential revoked');
      })
      .catch(() => {}); // the next ping round checks again
  };
  await bus.start();
  relay.start();
  linkServer.start();
  scheduler.start();
  sweeper.start();
  logger.info({ url, database: db.backend, replica: replicaId }, 'listening');

  let closing: Promise<void> | undefined;
  return {
    app,
    url,
    publicUrl,
    port,
    db,
    logger,
    workstations,
    credentials,
    principals,
    pairing,
    runs,
    leases,
    scheduler,
    sweeper,
    links,
    replicaId,
    ...(adminTokenHere ? { adminTokenPath } : {}),
    close() {
      closing ??= (async () => {
        await scheduler.stop();
        await sweeper.stop();
        relay.stop();
        await linkServer.close();
        await bus.close();
        principals.close();
        shutdown.abort(); // ends live event streams
        await new Promise<void>((r) => {
          const http = server as Server;
          const force = setTimeout(() => http.closeAllConnections(), 5000);
          server.close(() => {
            clearTimeout(force);
            r();
          });
          http.closeIdleConnections();
        });
        if (!opts.db) await db.close();
        lock?.release();
        logger.info('stopped');
      })();
      return closing;
    },
  };
}

async function exists(path: string): Promise<boolean> {
  const { access } = await import('node:fs/promises');
  return access(path).then(
    () => true,
    () => false,
  );
}

/** 0600 file in a 0700 directory, written to a temp file and renamed into place. */
async function writeSecretFile(path: string, content: string): Promise<void> {
  const dir = join(path, '..');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, content, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}

/** This package's version (from dist/ or src/, package.json is one level up either way). */
function packageVersion(): string {
  try {
    return (createRequire(import.meta.url)('../package.json') as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}
