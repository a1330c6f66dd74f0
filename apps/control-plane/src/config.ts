import { z } from 'zod';

const configSchema = z.object({
  host: z.string().min(1).default('127.0.0.1'),
  port: z.coerce.number().int().min(0).max(65_535).default(8787),
  databaseUrl: z.string().optional(),
  dataDir: z.string().min(1).default('./.runt'),
  adminToken: z.string().optional(),
  publicUrl: z.string().url().optional(),
  /** Largest request body accepted, in bytes. */
  bodyLimitBytes: z.coerce.number().int().positive().default(1024 * 1024),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type ControlPlaneConfig = z.infer<typeof configSchema>;

/**
 * Reads the control plane's configuration from the environment (`RUNT_HOST`, `RUNT_PORT`,
 * `DATABASE_URL`, `RUNT_DATA_DIR`, `RUNT_ADMIN_TOKEN`, `RUNT_PUBLIC_URL`, `RUNT_BODY_LIMIT`,
 * `RUNT_LOG_LEVEL`). Empty values count as unset.
 *
 * @example
 * const config = loadConfig({ RUNT_PORT: '0' });
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<ControlPlaneConfig> = {}): ControlPlaneConfig {
  const v = (k: string) => (env[k] && env[k]!.trim() !== '' ? env[k] : undefined);
  const parsed = configSchema.safeParse({
    host: v('RUNT_HOST'),
    port: v('RUNT_PORT'),
    databaseUrl: v('DATABASE_URL'),
    dataDir: v('RUNT_DATA_DIR'),
    adminToken: v('RUNT_ADMIN_TOKEN'),
    publicUrl: v('RUNT_PUBLIC_URL'),
    bodyLimitBytes: v('RUNT_BODY_LIMIT'),
    logLevel: v('RUNT_LOG_LEVEL'),
    ...overrides,
  });
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new Error(`invalid configuration: ${first?.path.join('.')}: ${first?.message}`);
  }
  return parsed.data;
}
