import Docker from 'dockerode';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { describeRuntimeConformance } from '../conformance/index.js';
import { describeContainerAdapter } from '../../test/container-adapter.js';
import {
  assertEngineReady,
  dockerTestOptions,
  MISSING_IMAGE,
  TEST_IMAGE,
  testDockerRuntime,
} from '../../test/engines.js';
import { createDockerRuntime, resolveDockerEndpoint } from './index.js';

const PACKAGE_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');

it('the Docker test engine is up and has the test image (else run scripts/setup-engines.sh)', async () => {
  await assertEngineReady(testDockerRuntime());
});

describeRuntimeConformance({
  name: 'docker',
  createRuntime: testDockerRuntime,
  image: TEST_IMAGE,
  missingImage: MISSING_IMAGE,
  reattachInNewProcess: {
    // A plain node child cannot load TypeScript: it uses the build (`npx tsup` / `pnpm build`).
    module: join(PACKAGE_ROOT, 'dist/docker/index.js'),
    exportName: 'createDockerRuntime',
    options: dockerTestOptions(),
  },
});

const engine = new Docker(resolveDockerEndpoint(dockerTestOptions()).options);

describeContainerAdapter({
  name: 'docker',
  createRuntime: testDockerRuntime,
  async engineInspect(id) {
    const info = await engine.getContainer(id).inspect();
    return {
      name: info.Name.replace(/^\//, ''),
      cpus: (info.HostConfig.NanoCpus ?? 0) / 1e9,
      memoryBytes: info.HostConfig.Memory ?? 0,
      labels: info.Config.Labels,
    };
  },
  unreachable(dir) {
    const socketPath = join(dir, 'no-docker.sock');
    return { runtime: createDockerRuntime({ socketPath }), mustName: socketPath };
  },
});

describe('resolveDockerEndpoint', () => {
  it('prefers socketPath, then host, then DOCKER_HOST, then the default socket', () => {
    expect(resolveDockerEndpoint({ socketPath: '/a.sock', host: 'unix:///b.sock' }).label).toBe('/a.sock');
    expect(resolveDockerEndpoint({ host: 'unix:///b.sock' }).options).toEqual({ socketPath: '/b.sock' });
    expect(resolveDockerEndpoint({ host: 'tcp://10.0.0.2:2376' }).options).toEqual({
      host: '10.0.0.2',
      port: '2376',
      protocol: 'http',
    });
    const saved = process.env['DOCKER_HOST'];
    try {
      process.env['DOCKER_HOST'] = 'unix:///c.sock';
      expect(resolveDockerEndpoint().label).toBe('/c.sock');
      delete process.env['DOCKER_HOST'];
      expect(resolveDockerEndpoint().label).toBe('/var/run/docker.sock');
    } finally {
      if (saved === undefined) delete process.env['DOCKER_HOST'];
      else process.env['DOCKER_HOST'] = saved;
    }
  });
});
