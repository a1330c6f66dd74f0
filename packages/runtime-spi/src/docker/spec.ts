import type Docker from 'dockerode';
import { withManagedLabels } from '../labels.js';
import type { Instance, InstanceSpec } from '../runtime.js';
import { DOCKER_RUNTIME } from './connection.js';
import {
  CONFIG_MOUNT_PATH,
  WORKSPACE_PATH,
  containerEnv,
  containerState,
  containerWorkdir,
  engineTime,
  envList,
} from './conventions.js';

/**
 * The Docker create body for a spec: name, image, argv, env, workdir, labels, bind mounts
 * (sources at /workspace, config read-only at /etc/runt/config) and cpu/memory limits.
 * @example
 * await docker.createContainer(toCreateOptions({ name: 'w1', image: 'busybox', command: ['true'] }));
 */
export function toCreateOptions(spec: InstanceSpec & { image: string }): Docker.ContainerCreateOptions {
  const mounts: Docker.MountSettings[] = [];
  if (spec.sourcePath)
    mounts.push({ Type: 'bind', Source: spec.sourcePath, Target: WORKSPACE_PATH, ReadOnly: false });
  if (spec.configPath)
    mounts.push({ Type: 'bind', Source: spec.configPath, Target: CONFIG_MOUNT_PATH, ReadOnly: true });
  const hostConfig: Docker.HostConfig = { Mounts: mounts };
  if (spec.limits?.cpus !== undefined) hostConfig.NanoCpus = Math.round(spec.limits.cpus * 1e9);
  if (spec.limits?.memoryBytes !== undefined) hostConfig.Memory = spec.limits.memoryBytes;
  const workdir = containerWorkdir(spec);
  return {
    name: spec.name,
    Image: spec.image,
    ...(spec.command?.length ? { Cmd: spec.command } : {}),
    Env: envList(containerEnv(spec)),
    ...(workdir ? { WorkingDir: workdir } : {}),
    Labels: withManagedLabels(spec.labels),
    HostConfig: hostConfig,
  };
}

/**
 * An {@link Instance} from `docker inspect` output.
 * @example
 * const instance = toInstance(await docker.getContainer(id).inspect());
 */
export function toInstance(info: Docker.ContainerInspectInfo): Instance {
  const state = containerState(info.State?.Status);
  const instance: Instance = {
    id: info.Id,
    name: info.Name.replace(/^\//, ''),
    runtime: DOCKER_RUNTIME,
    state,
    labels: info.Config?.Labels ?? {},
    image: info.Config?.Image,
    details: { containerId: info.Id, imageId: info.Image, pid: info.State?.Pid || undefined },
  };
  const createdAt = engineTime(info.Created);
  const startedAt = engineTime(info.State?.StartedAt);
  const finishedAt = engineTime(info.State?.FinishedAt);
  if (createdAt) instance.createdAt = createdAt;
  if (startedAt) instance.startedAt = startedAt;
  if (finishedAt && state === 'exited') instance.finishedAt = finishedAt;
  if (state === 'exited') instance.exitCode = info.State.ExitCode;
  return instance;
}
