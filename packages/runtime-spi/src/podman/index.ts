/**
 * `@runt/runtime-spi/podman`: the Podman adapter (podman's native CLI, no daemon).
 * @example
 * import { createPodmanRuntime } from '@runt/runtime-spi/podman';
 * const podman = createPodmanRuntime(); // `podman` on PATH
 * console.log(await podman.available());
 */
export { createPodmanRuntime, PodmanRuntime, type PodmanRuntimeOptions } from './runtime.js';
export { PodmanCli } from './cli.js';
