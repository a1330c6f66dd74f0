import { join } from 'node:path';
import { RuntimeRegistry } from '@runt/runtime-spi';

/**
 * A registry with the built-in adapters, each loaded only when named: `process` (state under
 * `<stateDir>/process`), `docker` (DOCKER_HOST or the default socket), `podman` and `fake`
 * (in memory; for tests and benchmarks; it keeps no record of its calls, which would grow with
 * every run).
 *
 * @example
 * const runtime = await defaultRuntimes('/var/lib/runt').get('process');
 */
export function defaultRuntimes(stateDir: string): RuntimeRegistry {
  return new RuntimeRegistry()
    .register('process', async () =>
      (await import('@runt/runtime-spi/process')).createProcessRuntime({
        stateDir: join(stateDir, 'process'),
      }),
    )
    .register('docker', async () => (await import('@runt/runtime-spi/docker')).createDockerRuntime())
    .register('podman', async () => (await import('@runt/runtime-spi/podman')).createPodmanRuntime())
    .register('fake', async () =>
      (await import('@runt/runtime-spi/fake')).createFakeRuntime({ recordCalls: false }),
    );
}
