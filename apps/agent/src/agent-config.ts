import { parseArgs } from 'node:util';
import { join } from 'node:path';
import envPaths from 'env-paths';
import { z } from 'zod';
import {
  LEASE_MS_DEFAULT,
  LEASE_MS_MAX,
  MIN_HELD_LEASE_MS,
  labelsSchema,
  runtimeNameSchema,
} from '@runt/protocol';
import { AgentError } from './agent-error.js';
import { parseCloudUrls } from './cloud-url-pool.js';
import { LOG_FORMATS } from './log-format.js';

const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'] as const;

const configSchema = z.object({
  runtimes: z
    .array(runtimeNameSchema)
    .min(1, 'name at least one runtime with --runtime (or RUNT_DEFAULT_RUNTIME)'),
  maxRuns: z.coerce.number().int().min(1).max(10_000),
  prefetch: z.coerce.number().int().min(0).max(10_000),
  labels: labelsSchema,
  once: z.boolean(),
  link: z.boolean(),
  leaseMs: z.coerce.number().int().min(MIN_HELD_LEASE_MS).max(LEASE_MS_MAX),
  pollIntervalMs: z.coerce.number().int().min(50).max(600_000),
  heartbeatIntervalMs: z.coerce.number().int().min(100).max(600_000),
  shutdownGraceMs: z.coerce.number().int().min(0).max(86_400_000),
  stopTimeoutMs: z.coerce.number().int().min(0).max(3_600_000),
  shutdownSignals: z.array(z.enum(SIGNALS)),
  stateDir: z.string().min(1),
  displayName: z.string().trim().min(1).max(200).optional(),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  logFormat: z.enum(LOG_FORMATS).optional(),
});

/** Everything the agent binary reads from flags and the environment (secrets excluded). */
export type AgentConfig = z.infer<typeof configSchema>;

/** Help text of `runt-agent`. */
export const AGENT_USAGE = `usage: runt-agent --runtime R [--runtime R2] [options]

  --runtime R            runtime to offer (process, docker, podman, fake); repeatable or comma-separated
                         (default: RUNT_DEFAULT_RUNTIME)
  --max-runs N           runs at once (default 1; RUNT_MAX_RUNS)
  --prefetch N           runs taken ahead of a free slot: claimed and ready, each starts as a slot
                         frees (default 0; RUNT_PREFETCH). For many short runs; a run taken waits
                         for this agent's slot even while another agent is idle
  --label k=v            workstation label; repeatable (also --labels k=v,k2=v2)
  --once                 take one run, finish it and exit (ephemeral workers)
  --no-link              never open the WebSocket link; poll for offers instead
  --lease-ms MS          lease length per run (default 30000; RUNT_LEASE_MS)
  --poll-interval-ms MS  polling period while the link is down (default 2000; RUNT_POLL_INTERVAL_MS)
  --heartbeat-interval-ms MS   workstation heartbeat period (default 15000)
  --shutdown-grace-ms MS how long runs may finish after SIGTERM before they are stopped (default 30000)
  --stop-timeout-ms MS   polite-signal-to-kill time when stopping a workload (default 10000)
  --shutdown-signal SIG  signals that start a graceful shutdown; repeatable (default SIGTERM, SIGINT)
  --state-dir DIR        per-run state files and work dirs (default RUNT_STATE_DIR, else <config dir>/state)
  --name NAME            display name (default: the credential's, else the bare hostname)
  --log-level LEVEL      pino level (default info; RUNT_LOG_LEVEL)
  --log-format F         pretty (one line a person reads) or json (default: pretty on a terminal,
                         json otherwise; RUNT_LOG_FORMAT)

RUNT_CLOUD_URL may list several control plane URLs (comma-separated): the agent fails over
between them with backoff and jitter. The credential comes from RUNT_CLOUD_URL / RUNT_CLOUD_TOKEN, else the workstation.json that
\`runt workstation connect\` stored (RUNT_CONFIG_DIR). Tokens are never accepted in argv.`;

/**
 * Parses the agent's flags and environment into an {@link AgentConfig}. Flags win over
 * environment variables; a bad value throws an `AgentError('config-invalid')` with one line
 * naming the setting. The token is deliberately not a flag: argv is world-readable in /proc.
 *
 * @example
 * const config = loadAgentConfig(['--runtime', 'process', '--max-runs', '4'], process.env);
 */
export function loadAgentConfig(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): AgentConfig & { help: boolean } {
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        runtime: { type: 'string', multiple: true },
        'max-runs': { type: 'string' },
        prefetch: { type: 'string' },
        label: { type: 'string', multiple: true },
        labels: { type: 'string', multiple: true },
        once: { type: 'boolean' },
        'no-link': { type: 'boolean' },
        'lease-ms': { type: 'string' },
        'poll-interval-ms': { type: 'string' },
        'heartbeat-interval-ms': { type: 'string' },
        'shutdown-grace-ms': { type: 'string' },
        'stop-timeout-ms': { type: 'string' },
        'shutdown-signal': { type: 'string', multiple: true },
        'state-dir': { type: 'string' },
        name: { type: 'string' },
        'log-level': { type: 'string' },
        'log-format': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    throw new AgentError('config-invalid', (e as Error).message.split('\n')[0] ?? 'invalid arguments');
  }
  const v = (k: string) => (env[k] && env[k].trim() !== '' ? env[k].trim() : undefined);
  const list = (x: unknown) =>
    ((x as string[] | undefined) ?? [])
      .flatMap((s) => s.split(','))
      .map((s) => s.trim())
      .filter(Boolean);

  const runtimes = list(values.runtime);
  const labels: Record<string, string> = {};
  for (const pair of [
    ...list(v('RUNT_LABELS') ? [v('RUNT_LABELS')] : []),
    ...list(values.label),
    ...list(values.labels),
  ]) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new AgentError('config-invalid', `invalid label "${pair}": use key=value`);
    labels[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const signals = list(values['shutdown-signal']).map((s) => s.toUpperCase());
  const configDir = v('RUNT_CONFIG_DIR') ?? envPaths('runt', { suffix: '' }).config;
  const parsed = configSchema.safeParse({
    runtimes: runtimes.length > 0 ? [...new Set(runtimes)] : list([v('RUNT_DEFAULT_RUNTIME') ?? '']),
    maxRuns: values['max-runs'] ?? v('RUNT_MAX_RUNS') ?? 1,
    prefetch: values.prefetch ?? v('RUNT_PREFETCH') ?? 0,
    labels,
    once: values.once === true,
    link: values['no-link'] !== true && v('RUNT_AGENT_LINK') !== '0',
    leaseMs: values['lease-ms'] ?? v('RUNT_LEASE_MS') ?? LEASE_MS_DEFAULT,
    pollIntervalMs: values['poll-interval-ms'] ?? v('RUNT_POLL_INTERVAL_MS') ?? 2_000,
    heartbeatIntervalMs: values['heartbeat-interval-ms'] ?? v('RUNT_HEARTBEAT_INTERVAL_MS') ?? 15_000,
    shutdownGraceMs: values['shutdown-grace-ms'] ?? v('RUNT_SHUTDOWN_GRACE_MS') ?? 30_000,
    stopTimeoutMs: values['stop-timeout-ms'] ?? v('RUNT_STOP_TIMEOUT_MS') ?? 10_000,
    shutdownSignals: signals.length > 0 ? signals : ['SIGTERM', 'SIGINT'],
    stateDir: (values['state-dir'] as string | undefined) ?? v('RUNT_STATE_DIR') ?? join(configDir, 'state'),
    displayName: values.name,
    logLevel: values['log-level'] ?? v('RUNT_LOG_LEVEL') ?? 'info',
    logFormat: values['log-format'] ?? v('RUNT_LOG_FORMAT'),
  });
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new AgentError(
      'config-invalid',
      `invalid configuration: ${first?.path.join('.') || 'value'}: ${first?.message}`,
    );
  }
  return { ...parsed.data, help: values.help === true };
}

/**
 * The control plane URLs `RUNT_CLOUD_URL` names (one, or several comma-separated), `undefined`
 * when it is unset; a bad entry throws an `AgentError('config-invalid')`.
 *
 * @example
 * cloudUrlsFromEnv({ RUNT_CLOUD_URL: 'http://cp1:8787,http://cp2:8787' }); // ['http://cp1:8787', 'http://cp2:8787']
 */
export function cloudUrlsFromEnv(env: NodeJS.ProcessEnv = process.env): string[] | undefined {
  const value = env.RUNT_CLOUD_URL?.trim();
  return value ? parseCloudUrls(value) : undefined;
}
