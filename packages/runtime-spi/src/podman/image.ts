import { RuntimeError } from '../errors.js';
import type { ImageInfo } from '../runtime.js';
import { PODMAN_RUNTIME, podmanMessage, type PodmanCli } from './cli.js';

/**
 * The local image for `ref`, or undefined when podman does not have it.
 * @example
 * const info = await inspectPodmanImage(cli, 'runt-test/busybox:latest');
 */
export async function inspectPodmanImage(
  cli: PodmanCli,
  ref: string,
  signal?: AbortSignal,
): Promise<ImageInfo | undefined> {
  const result = await cli.run(
    ['image', 'inspect', '--format', '{{.Id}}', '--', ref],
    signal ? { signal } : {},
  );
  if (result.exitCode !== 0) return undefined;
  const id = result.stdout.trim();
  return { ref, id: id.startsWith('sha256:') ? id : `sha256:${id}` };
}

/**
 * Local inspect, else `podman pull` (killed when `signal` aborts), else `image-unavailable`
 * with podman's reason.
 * @example
 * await ensurePodmanImage(cli, 'runt-test/busybox:latest', AbortSignal.timeout(600_000));
 */
export async function ensurePodmanImage(
  cli: PodmanCli,
  ref: string,
  signal: AbortSignal,
): Promise<ImageInfo> {
  const local = await inspectPodmanImage(cli, ref, signal);
  if (local) return local;
  const pulled = await cli.run(['pull', '--quiet', '--', ref], { signal });
  if (pulled.exitCode !== 0) {
    throw new RuntimeError(
      'image-unavailable',
      `image ${ref} is not present locally and pulling it failed: ${podmanMessage(pulled.stderr)}`,
      {
        runtime: PODMAN_RUNTIME,
      },
    );
  }
  const after = await inspectPodmanImage(cli, ref, signal);
  if (!after)
    throw new RuntimeError('image-unavailable', `image ${ref} was pulled but podman does not list it`, {
      runtime: PODMAN_RUNTIME,
    });
  return after;
}
