import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { it } from 'vitest';
import { describeRuntimeConformance } from '../conformance/index.js';
import { describeContainerAdapter } from '../../test/container-adapter.js';
import {
  assertEngineReady,
  MISSING_IMAGE,
  podmanTestOptions,
  TEST_IMAGE,
  testPodmanRuntime,
} from '../../test/engines.js';
import { createPodmanRuntime } from './index.js';

const PACKAGE_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const PODMAN = podmanTestOptions().podmanPath ?? 'podman';

it('the Podman test engine runs and has the test image (else run scripts/setup-engines.sh)', async () => {
  await assertEngineReady(testPodmanRuntime());
});

describeRuntimeConformance({
  name: 'podman',
  createRuntime: testPodmanRuntime,
  image: TEST_IMAGE,
  missingImage: MISSING_IMAGE,
  reattachInNewProcess: {
    // A plain node child cannot load TypeScript: it uses the build (`npx tsup` / `pnpm build`).
    module: join(PACKAGE_ROOT, 'dist/podman/index.js'),
    exportName: 'createPodmanRuntime',
    options: podmanTestOptions(),
  },
});

interface PodmanInspectJson {
  Name: string;
  HostConfig: { NanoCpus?: number; CpuQuota?: number; CpuPeriod?: number; Memory?: number };
  Config: { Labels: Record<string, string> };
}

describeContainerAdapter({
  name: 'podman',
  createRuntime: testPodmanRuntime,
  async engineInspect(id) {
    const { stdout } = await promisify(execFile)(PODMAN, ['container', 'inspect', '--format', 'json', id]);
    const [info] = JSON.parse(stdout) as PodmanInspectJson[];
    if (!info) throw new Error(`podman does not know ${id}`);
    const host = info.HostConfig;
    return {
      name: info.Name,
      cpus: host.NanoCpus ? host.NanoCpus / 1e9 : (host.CpuQuota ?? 0) / (host.CpuPeriod || 1),
      memoryBytes: host.Memory ?? 0,
      labels: info.Config.Labels,
    };
  },
  unreachable(dir) {
    const podmanPath = join(dir, 'no-podman');
    return { runtime: createPodmanRuntime({ podmanPath }), mustName: podmanPath };
  },
});
