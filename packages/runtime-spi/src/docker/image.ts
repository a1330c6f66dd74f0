import type Docker from 'dockerode';
import { RuntimeError } from '../errors.js';
import type { ImageInfo } from '../runtime.js';
import {
  DOCKER_RUNTIME,
  engineMessage,
  engineStatus,
  toDockerError,
  type DockerEndpoint,
} from './connection.js';

/**
 * The local image for `ref`, or undefined when the engine does not have it.
 * @example
 * const info = await inspectDockerImage(docker, endpoint, 'busybox:latest');
 */
export async function inspectDockerImage(
  docker: Docker,
  endpoint: DockerEndpoint,
  ref: string,
): Promise<ImageInfo | undefined> {
  try {
    const info = await docker.getImage(ref).inspect();
    return { ref, id: info.Id };
  } catch (e) {
    if (engineStatus(e) === 404) return undefined;
    throw toDockerError(e, endpoint, { what: `image ${ref}`, fallback: 'image-unavailable' });
  }
}

/**
 * Local inspect, else a pull (bounded by `signal`), else an `image-unavailable` RuntimeError
 * saying both that the image is not local and why the pull failed.
 * @example
 * const info = await ensureDockerImage(docker, endpoint, 'busybox:latest', AbortSignal.timeout(600_000));
 */
export async function ensureDockerImage(
  docker: Docker,
  endpoint: DockerEndpoint,
  ref: string,
  signal: AbortSignal,
): Promise<ImageInfo> {
  const local = await inspectDockerImage(docker, endpoint, ref);
  if (local) return local;
  try {
    const stream = await docker.pull(ref, { abortSignal: signal });
    await new Promise<void>((resolve, reject) => {
      docker.modem.followProgress(
        stream,
        (err: Error | null, events: Array<{ error?: string; errorDetail?: { message?: string } }>) => {
          const failed = events?.find((ev) => ev.error || ev.errorDetail);
          if (err) reject(err);
          else if (failed) reject(new Error(failed.errorDetail?.message ?? failed.error));
          else resolve();
        },
      );
    });
  } catch (e) {
    const unavailable = toDockerError(e, endpoint, { what: `pull ${ref}` });
    if (unavailable.code === 'runtime-unavailable') throw unavailable;
    if (signal.aborted && signal.reason instanceof RuntimeError) throw signal.reason;
    throw new RuntimeError(
      'image-unavailable',
      `image ${ref} is not present locally and pulling it failed: ${engineMessage(e)}`,
      { runtime: DOCKER_RUNTIME, cause: e },
    );
  }
  const pulled = await inspectDockerImage(docker, endpoint, ref);
  if (!pulled) {
    throw new RuntimeError('image-unavailable', `image ${ref} was pulled but the engine does not list it`, {
      runtime: DOCKER_RUNTIME,
    });
  }
  return pulled;
}
