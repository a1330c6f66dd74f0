import { z } from 'zod';
import { BODY_LIMIT_BYTES_DEFAULT } from '@runt/protocol';

const configSchema = z.object({
  host: z.string().min(1).default('127.0.0.1'),
  port: z.coerce.number().int().min(0).max(65_535).default(8787),
  databaseUrl: z.string().optional(),
  /**
   * Postgres: how long opening a database connection may take before the request gets a 503
   * (default: `@runt/sql`'s `POOL_CONNECT_MS`); `0`: no bound (node-postgres' own default, a
   * silent host then hangs the request). Never bounds the wait for a free pooled connection.
   */
  dbConnectTimeoutMs: z.coerce
    .number()
    .int()
    .refine((ms) => ms === 0 || ms >= 100, 'RUNT_DB_CONNECT_TIMEOUT_MS: 0 (no bound) or at least 100 ms')
    .optional(),
  dataDir: z.string().min(1).default('./.runt'),
  adminToken: z.string().optional(),
  publicUrl: z.string().url().optional(),
  /** Largest request body accepted, in bytes. */
  bodyLimitBytes: z.coerce.number().int().positive().default(BODY_LIMIT_BYTES_DEFAULT),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Periodic scheduling pass (submits, finishes and registrations also trigger one at once). */
  schedulerTickMs: z.coerce.number().int().min(10).default(1000),
  /** How often expired leases and unclaimed offers are swept. */
  sweepIntervalMs: z.coerce.number().int().min(10).default(1000),
  /** An offer not claimed within this time goes back to the queue. */
  offerTimeoutMs: z.coerce.number().int().min(100).default(30_000),
  /** Idle agent links are pinged this often; a link that missed a whole round is closed. */
  linkPingMs: z.coerce.number().int().min(100).default(25_000),
  /** Largest bundle accepted by `PUT /api/bundles/:sha256`, in bytes. */
  bundleLimitBytes: z.coerce
    .number()
    .int()
    .positive()
    .default(64 * 1024 * 1024),
  /** How often a live event stream re-reads the database when no in-process append woke it (other replicas). */
  eventPollMs: z.coerce.number().int().min(10).default(1000),
  /** Default `timeout_s` of a run that names none (seconds; unset: no limit). */
  runTimeoutS: z.coerce
    .number()
    .int()
    .min(1)
    .max(30 * 24 * 3600)
    .optional(),
  /** Default `queue_timeout_s` of a run that names none (seconds; unset: no limit). */
  queueTimeoutS: z.coerce
    .number()
    .int()
    .min(1)
    .max(30 * 24 * 3600)
    .optional(),
  /** Seconds past `timeout_s` before the sweeper ends a run its agent did not stop. */
  runTimeoutGraceS: z.coerce.number().int().min(0).default(60),
  /** Key sealing secret env entries at rest: base64 of 32 bytes (`RUNT_SECRET_KEY`), or a file holding it. */
  secretKey: z.string().optional(),
  secretKeyFile: z.string().optional(),
  /** Names this process in `workstations.link_replica`; default: random per start. */
  replicaId: z.string().min(1).max(100).optional(),
});

export type ControlPlaneConfig = z.infer<typeof configSchema>;

/**
 * Reads the control plane's configuration from the environment (`RUNT_HOST`, `RUNT_PORT`,
 * `DATABASE_URL`, `RUNT_DB_CONNECT_TIMEOUT_MS`, `RUNT_DATA_DIR`, `RUNT_ADMIN_TOKEN`, `RUNT_PUBLIC_URL`, `RUNT_BODY_LIMIT`,
 * `RUNT_LOG_LEVEL`, `RUNT_SCHEDULER_TICK_MS`, `RUNT_SWEEP_INTERVAL_MS`, `RUNT_OFFER_TIMEOUT_MS`,
 * `RUNT_LINK_PING_MS`, `RUNT_BUNDLE_LIMIT`, `RUNT_EVENT_POLL_MS`, `RUNT_REPLICA_ID`,
 * `RUNT_RUN_TIMEOUT_S`, `RUNT_QUEUE_TIMEOUT_S`, `RUNT_RUN_TIMEOUT_GRACE_S`, `RUNT_SECRET_KEY`,
 * `RUNT_SECRET_KEY_FILE`). Empty values
 * count as unset.
 *
 * @example
 * const config = loadConfig({ RUNT_PORT: '0' });
 */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  overrides: Partial<ControlPlaneConfig> = {},
): ControlPlaneConfig {
  const v = (k: string) => (env[k] && env[k].trim() !== '' ? env[k] : undefined);
  const parsed = configSchema.safeParse({
    host: v('RUNT_HOST'),
    port: v('RUNT_PORT'),
    databaseUrl: v('DATABASE_URL'),
    dbConnectTimeoutMs: v('RUNT_DB_CONNECT_TIMEOUT_MS'),
    dataDir: v('RUNT_DATA_DIR'),
    adminToken: v('RUNT_ADMIN_TOKEN'),
    publicUrl: v('RUNT_PUBLIC_URL'),
    bodyLimitBytes: v('RUNT_BODY_LIMIT'),
    logLevel: v('RUNT_LOG_LEVEL'),
    schedulerTickMs: v('RUNT_SCHEDULER_TICK_MS'),
    sweepIntervalMs: v('RUNT_SWEEP_INTERVAL_MS'),
    offerTimeoutMs: v('RUNT_OFFER_TIMEOUT_MS'),
    linkPingMs: v('RUNT_LINK_PING_MS'),
    bundleLimitBytes: v('RUNT_BUNDLE_LIMIT'),
    eventPollMs: v('RUNT_EVENT_POLL_MS'),
    replicaId: v('RUNT_REPLICA_ID'),
    secretKey: v('RUNT_SECRET_KEY'),
    secretKeyFile: v('RUNT_SECRET_KEY_FILE'),
    runTimeoutS: v('RUNT_RUN_TIMEOUT_S'),
    queueTimeoutS: v('RUNT_QUEUE_TIMEOUT_S'),
    runTimeoutGraceS: v('RUNT_RUN_TIMEOUT_GRACE_S'),
    ...overrides,
  });
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new Error(`invalid configuration: ${first?.path.join('.')}: ${first?.message}`);
  }
  return parsed.data;
}
