import { join } from 'node:path';
import { RuntimeRegistry } from '@runt/runtime-spi';

/** The runtimes the CLI offers, by name. Each adapter is imported only when it is used. */
export const CLI_RUNTIMES = ['docker', 'podman', 'process'] as const;

/**
 * A registry of the CLI's runtimes. The process runtime keeps its per-instance state (pid files,
 * logs) under `RUNT_STATE_DIR` or `<config dir>/process`, so later commands find it again.
 */
export function createCliRuntimeRegistry(configDir: string): RuntimeRegistry {
  return new RuntimeRegistry()
    .register('docker', async () => (await import('@runt/runtime-spi/docker')).createDockerRuntime())
    .register('podman', async () => (await import('@runt/runtime-spi/podman')).createPodmanRuntime())
    .register('process', async () =>
      (await import('@runt/runtime-spi/process')).createProcessRuntime({
        stateDir: process.env.RUNT_STATE_DIR ?? join(configDir, 'process'),
      }),
    );
}
