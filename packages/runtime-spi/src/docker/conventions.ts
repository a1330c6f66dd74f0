import { isAbsolute } from 'node:path';
import { RuntimeError } from '../errors.js';
import type { InstanceSpec, InstanceState } from '../runtime.js';

/**
 * Conventions shared by the container adapters (docker, podman): where a spec's host paths
 * appear inside the container and how a spec is validated. Podman imports these from here so
 * both engines lay out containers identically.
 */

/** Where `sourcePath` is bind-mounted; also the default working directory when it is set. */
export const WORKSPACE_PATH = '/workspace';
/** Where `configPath` is bind-mounted read-only. */
export const CONFIG_MOUNT_PATH = '/etc/runt/config';
/** Env var that tells the workload where its config file is. */
export const CONFIG_ENV = 'RUNT_CONFIG_PATH';
/** Program a terminal runs when the caller names none. */
export const DEFAULT_SHELL = ['/bin/sh'];

const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/**
 * Checks what both engines would otherwise reject with a less helpful message.
 * @example
 * validateContainerSpec({ name: 'w1', image: 'busybox' }, 'docker');
 */
export function validateContainerSpec(
  spec: InstanceSpec,
  runtime: string,
): asserts spec is InstanceSpec & { image: string } {
  const invalid = (message: string) => new RuntimeError('invalid-spec', message, { runtime });
  if (!spec.name || !NAME_PATTERN.test(spec.name)) {
    throw invalid(`instance name ${JSON.stringify(spec.name)} must match ${NAME_PATTERN.source}`);
  }
  if (!spec.image) throw invalid(`instance ${spec.name}: an image is required by the ${runtime} runtime`);
  if (spec.sourcePath !== undefined && !isAbsolute(spec.sourcePath)) {
    throw invalid(`instance ${spec.name}: sourcePath must be absolute, got ${spec.sourcePath}`);
  }
  if (spec.configPath !== undefined && !isAbsolute(spec.configPath)) {
    throw invalid(`instance ${spec.name}: configPath must be absolute, got ${spec.configPath}`);
  }
  const { cpus, memoryBytes } = spec.limits ?? {};
  if (cpus !== undefined && !(Number.isFinite(cpus) && cpus > 0)) {
    throw invalid(`instance ${spec.name}: limits.cpus must be a positive number, got ${cpus}`);
  }
  if (memoryBytes !== undefined && !(Number.isInteger(memoryBytes) && memoryBytes > 0)) {
    throw invalid(`instance ${spec.name}: limits.memoryBytes must be a positive integer, got ${memoryBytes}`);
  }
}

/**
 * The environment a container gets: the caller's, plus RUNT_CONFIG_PATH when a config is mounted.
 * @example
 * containerEnv({ name: 'w', configPath: '/h/c.json' }) // { RUNT_CONFIG_PATH: '/etc/runt/config' }
 */
export function containerEnv(spec: InstanceSpec): Record<string, string> {
  return { ...(spec.env ?? {}), ...(spec.configPath ? { [CONFIG_ENV]: CONFIG_MOUNT_PATH } : {}) };
}

/**
 * Working directory: explicit, else /workspace when sources are mounted, else the image's.
 * @example
 * containerWorkdir({ name: 'w', sourcePath: '/src' }) // '/workspace'
 */
export function containerWorkdir(spec: InstanceSpec): string | undefined {
  return spec.workdir ?? (spec.sourcePath ? WORKSPACE_PATH : undefined);
}

/**
 * `KEY=value` lines, the form both engines take env in.
 * @example
 * envList({ A: '1' }) // ['A=1']
 */
export function envList(env: Record<string, string> | undefined): string[] {
  return Object.entries(env ?? {}).map(([k, v]) => `${k}=${v}`);
}

/**
 * Maps an engine's container status word to an {@link InstanceState}.
 * @example
 * containerState('exited') // 'exited'
 */
export function containerState(status: string | undefined): InstanceState {
  switch (status?.toLowerCase()) {
    case 'created':
    case 'configured':
    case 'initialized':
      return 'created';
    case 'running':
    case 'paused':
    case 'restarting':
    case 'stopping':
      return 'running';
    case 'exited':
    case 'stopped':
    case 'dead':
      return 'exited';
    default:
      return 'unknown';
  }
}

/**
 * An engine timestamp as ISO-8601, or undefined for the zero time engines use for "never".
 * @example
 * engineTime('0001-01-01T00:00:00Z') // undefined
 */
export function engineTime(value: string | undefined): string | undefined {
  if (!value || value.startsWith('0001-01-01')) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : new Date(ms).toISOString();
}

/**
 * `since` (ISO or epoch ms) as fractional unix seconds, as both engines take it.
 * @example
 * sinceSeconds(1_700_000_000_500) // 1700000000.5
 */
export function sinceSeconds(since: string | number | undefined): number | undefined {
  if (since === undefined) return undefined;
  const ms = typeof since === 'number' ? since : Date.parse(since);
  return Number.isNaN(ms) ? undefined : ms / 1000;
}
