import { RuntimeError } from '../errors.js';
import { withManagedLabels } from '../labels.js';
import type { Instance, InstanceSpec } from '../runtime.js';
import {
  CONFIG_MOUNT_PATH,
  WORKSPACE_PATH,
  containerState,
  containerWorkdir,
  engineTime,
} from '../docker/conventions.js';
import { PODMAN_RUNTIME } from './cli.js';

/** The part of `podman container inspect --format json` the adapter reads. */
export interface PodmanInspect {
  Id: string;
  Name: string;
  Created?: string;
  Image?: string;
  ImageName?: string;
  State?: { Status?: string; ExitCode?: number; StartedAt?: string; FinishedAt?: string; Pid?: number };
  Config?: { Labels?: Record<string, string> | null; Image?: string };
}

/**
 * `podman create` arguments for a spec: the same layout as the Docker adapter (sources at
 * /workspace, config read-only at /etc/runt/config + RUNT_CONFIG_PATH, runt.managed label),
 * never pulling implicitly (ensureImage does that) and logging to a file `podman logs` reads.
 * @example
 * await cli.run(toCreateArgs({ name: 'w1', image: 'busybox', command: ['true'] }));
 */
export function toCreateArgs(spec: InstanceSpec & { image: string }, env: PodmanEnvArgs = NO_ENV): string[] {
  const args = ['create', '--name', spec.name, '--pull', 'never', '--log-driver', 'k8s-file'];
  for (const [k, v] of Object.entries(withManagedLabels(spec.labels))) args.push('--label', `${k}=${v}`);
  // never `--env K=V`: argv is readable by every user of the host (/proc/<pid>/cmdline)
  if (env.file) args.push('--env-file', env.file);
  for (const name of env.inherited) args.push('--env', name);
  const workdir = containerWorkdir(spec);
  if (workdir) args.push('--workdir', workdir);
  if (spec.sourcePath)
    args.push('--mount', `type=bind,source=${mountPath(spec.sourcePath)},destination=${WORKSPACE_PATH}`);
  if (spec.configPath)
    args.push(
      '--mount',
      `type=bind,source=${mountPath(spec.configPath)},destination=${CONFIG_MOUNT_PATH},ro=true`,
    );
  if (spec.limits?.cpus !== undefined) args.push('--cpus', String(spec.limits.cpus));
  if (spec.limits?.memoryBytes !== undefined) args.push('--memory', `${spec.limits.memoryBytes}b`);
  args.push('--', spec.image, ...(spec.command ?? []));
  return args;
}

/**
 * The libpod `POST /containers/create` body (its SpecGenerator) for a spec: the same container
 * as {@link toCreateArgs} describes — same layout, labels, limits, log driver, no pull (the API
 * never pulls on create) — used when the REST service answers, the CLI otherwise. The env is in
 * the request body on a private socket, never on a command line.
 * @example
 * await service.call('POST', '/containers/create', { body: toCreateBody(spec, containerEnv(spec)) });
 */
export function toCreateBody(
  spec: InstanceSpec & { image: string },
  env: Record<string, string>,
): Record<string, unknown> {
  const mounts: Array<{ destination: string; source: string; type: 'bind'; options: string[] }> = [];
  if (spec.sourcePath)
    mounts.push({
      destination: WORKSPACE_PATH,
      source: mountPath(spec.sourcePath),
      type: 'bind',
      options: ['rbind'],
    });
  if (spec.configPath)
    mounts.push({
      destination: CONFIG_MOUNT_PATH,
      source: mountPath(spec.configPath),
      type: 'bind',
      options: ['rbind', 'ro'],
    });
  const limits: Record<string, unknown> = {};
  // `--cpus N` is a CFS quota of N periods of 100 ms, as the CLI sets it
  if (spec.limits?.cpus !== undefined)
    limits.cpu = { quota: Math.round(spec.limits.cpus * CPU_PERIOD_US), period: CPU_PERIOD_US };
  if (spec.limits?.memoryBytes !== undefined) limits.memory = { limit: spec.limits.memoryBytes };
  const workdir = containerWorkdir(spec);
  return {
    name: spec.name,
    image: spec.image,
    ...(spec.command ? { command: spec.command } : {}),
    env,
    labels: withManagedLabels(spec.labels),
    ...(workdir ? { work_dir: workdir } : {}),
    ...(mounts.length > 0 ? { mounts } : {}),
    ...(Object.keys(limits).length > 0 ? { resource_limits: limits } : {}),
    log_configuration: { driver: 'k8s-file' },
  };
}
const CPU_PERIOD_US = 100_000;

/** How a container's env reaches `podman create` without its values on the command line. */
export interface PodmanEnvArgs {
  /** A 0600 file of `NAME=value` lines (`--env-file`). */
  file?: string;
  /** Names whose values podman takes from its own environment (`--env NAME`): values an env file cannot hold (a line break). */
  inherited: string[];
}
const NO_ENV: PodmanEnvArgs = { inherited: [] };

/**
 * A container's env split for {@link toCreateArgs}: the env file's text (values without line
 * breaks) and the entries podman must inherit from its own environment instead.
 * @example
 * podmanEnv({ A: '1', PEM: 'a\nb' }) // { fileText: 'A=1\n', inherited: { PEM: 'a\nb' } }
 */
export function podmanEnv(env: Record<string, string>): {
  fileText: string;
  inherited: Record<string, string>;
} {
  let fileText = '';
  const inherited: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (/[\r\n]/.test(v)) inherited[k] = v;
    else fileText += `${k}=${v}\n`;
  }
  return { fileText, inherited };
}

/** `--mount` is a comma-separated key=value list, so a path with a comma cannot be expressed. */
function mountPath(path: string): string {
  if (path.includes(',')) {
    throw new RuntimeError('invalid-spec', `podman cannot bind-mount a path containing a comma: ${path}`, {
      runtime: PODMAN_RUNTIME,
    });
  }
  return path;
}

/**
 * An {@link Instance} from podman's inspect JSON.
 * @example
 * const [info] = await cli.json<PodmanInspect[]>(['container', 'inspect', '--format', 'json', id], { what: id });
 * const instance = toInstance(info);
 */
export function toInstance(info: PodmanInspect): Instance {
  const state = containerState(info.State?.Status);
  const instance: Instance = {
    id: info.Id,
    name: info.Name,
    runtime: PODMAN_RUNTIME,
    state,
    labels: info.Config?.Labels ?? {},
    details: { containerId: info.Id, imageId: info.Image, pid: info.State?.Pid || undefined },
  };
  const image = info.ImageName ?? info.Config?.Image;
  if (image) instance.image = image;
  const createdAt = engineTime(info.Created);
  const startedAt = engineTime(info.State?.StartedAt);
  const finishedAt = engineTime(info.State?.FinishedAt);
  if (createdAt) instance.createdAt = createdAt;
  if (startedAt) instance.startedAt = startedAt;
  if (finishedAt && state === 'exited') instance.finishedAt = finishedAt;
  if (state === 'exited') instance.exitCode = info.State?.ExitCode ?? 0;
  return instance;
}

/**
 * The {@link Instance} a successful `podman create` describes, without asking podman again.
 * @example
 * createdInstance(stdout.trim(), spec).state // 'created'
 */
export function createdInstance(id: string, spec: InstanceSpec & { image: string }): Instance {
  return {
    id,
    name: spec.name,
    runtime: PODMAN_RUNTIME,
    state: 'created',
    labels: withManagedLabels(spec.labels),
    image: spec.image,
    createdAt: new Date().toISOString(),
    details: { containerId: id },
  };
}
