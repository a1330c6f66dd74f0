/**
 * `@runt/runtime-spi/docker`: the Docker adapter (dockerode over the engine's API socket).
 * @example
 * import { createDockerRuntime } from '@runt/runtime-spi/docker';
 * const docker = createDockerRuntime(); // $DOCKER_HOST, else /var/run/docker.sock
 * console.log(await docker.available());
 */
export { createDockerRuntime, DockerRuntime, type DockerRuntimeOptions } from './runtime.js';
export { resolveDockerEndpoint, DEFAULT_DOCKER_SOCKET, type DockerEndpoint } from './connection.js';
export { WORKSPACE_PATH, CONFIG_MOUNT_PATH, CONFIG_ENV } from './conventions.js';
