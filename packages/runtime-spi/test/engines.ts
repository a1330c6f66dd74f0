import { existsSync } from 'node:fs';
import { createDockerRuntime, type DockerRuntimeOptions } from '../src/docker/index.js';
import { createPodmanRuntime, type PodmanRuntimeOptions } from '../src/podman/index.js';
import type { Runtime } from '../src/runtime.js';

/**
 * Where the tests find the real engines. Nothing here skips: a missing engine or test image makes
 * the tests fail with a message saying how to set it up (scripts/setup-engines.sh), in CI and
 * locally alike.
 */

/** The image scripts/build-test-image.sh imports into both engines. */
export const TEST_IMAGE = process.env['RUNT_TEST_IMAGE'] ?? 'runt-test/busybox:latest';
/** An image that is never present and cannot be pulled here. */
export const MISSING_IMAGE = 'runt-test/does-not-exist:never';
/** The socket scripts/setup-engines.sh gives its private dockerd. */
export const PRIVATE_DOCKER_SOCKET = '/run/runt-docker/docker.sock';

const SETUP_HINT =
  'run `sudo scripts/setup-engines.sh` at the repository root (it installs and starts the engines and imports the test image)';

/**
 * The Docker address tests use: $DOCKER_HOST, else the private socket of setup-engines.sh when
 * it exists, else the default socket.
 * @example
 * const docker = createDockerRuntime(dockerTestOptions());
 */
export function dockerTestOptions(): DockerRuntimeOptions {
  const host = process.env['DOCKER_HOST'];
  if (host) return { host };
  if (existsSync(PRIVATE_DOCKER_SOCKET)) return { socketPath: PRIVATE_DOCKER_SOCKET };
  return { socketPath: '/var/run/docker.sock' };
}

/**
 * The podman binary tests use: $RUNT_PODMAN_PATH, else `podman` on PATH.
 * @example
 * const podman = createPodmanRuntime(podmanTestOptions());
 */
export function podmanTestOptions(): PodmanRuntimeOptions {
  const podmanPath = process.env['RUNT_PODMAN_PATH'];
  return podmanPath ? { podmanPath } : {};
}

/** A fresh Docker adapter on the test engine. */
export function testDockerRuntime(): Runtime {
  return createDockerRuntime(dockerTestOptions());
}

/** A fresh Podman adapter on the test engine. */
export function testPodmanRuntime(): Runtime {
  return createPodmanRuntime(podmanTestOptions());
}

/**
 * Throws a loud, actionable error unless the engine answers and has the test image. Call it in
 * a test (not a skip condition) so a missing engine fails the run.
 * @example
 * it('docker engine is ready', () => assertEngineReady(testDockerRuntime()));
 */
export async function assertEngineReady(runtime: Runtime): Promise<void> {
  try {
    const availability = await runtime.available();
    if (!availability.available) {
      throw new Error(
        `${runtime.name} engine is not available (${availability.reason ?? 'no reason given'}); ${SETUP_HINT}`,
      );
    }
    try {
      await runtime.ensureImage(TEST_IMAGE, { timeoutMs: 30_000 });
    } catch (e) {
      throw new Error(
        `${runtime.name} has no test image ${TEST_IMAGE} (${(e as Error).message}); ${SETUP_HINT}`,
        { cause: e },
      );
    }
  } finally {
    await runtime.close();
  }
}

/** A name unique to this test process, for containers the test creates. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
}
