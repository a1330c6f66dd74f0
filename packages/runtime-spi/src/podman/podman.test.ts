import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
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

/** create → start → wait → stop → remove through a podman that logs each call's subcommand, then runs the real one. */
async function podmanCallsOfOneRun(api: boolean): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'runt-podman-calls-'));
  const log = join(dir, 'calls');
  const shim = join(dir, 'podman');
  writeFileSync(shim, `#!/bin/sh\necho "$1" >> '${log}'\nexec '${PODMAN}' "$@"\n`);
  chmodSync(shim, 0o755);
  const runtime = createPodmanRuntime({ ...podmanTestOptions(), podmanPath: shim, api });
  const inst = await runtime.create({
    name: `runt-calls-${api ? 'api' : 'cli'}-${process.pid}`,
    image: TEST_IMAGE,
    command: ['/bin/sh', '-c', 'exit 3'],
  });
  await runtime.start(inst.id);
  expect(await runtime.wait(inst.id)).toEqual({ exitCode: 3 });
  await runtime.stop(inst.id); // what the agent does before removing: nothing left to stop
  await runtime.remove(inst.id);
  expect(await runtime.inspect(inst.id)).toBeUndefined();
  await runtime.close();
  return readFileSync(log, 'utf8').trim().split('\n');
}

it.each([
  ["CLI: a 0600 env file, or podman's own env for a value with a line break", false],
  ['REST: the request body on the private socket', true],
])("the env never reaches podman's command line (%s), and the workload sees it", async (_how, api) => {
  const dir = mkdtempSync(join(tmpdir(), 'runt-podman-argv-'));
  const log = join(dir, 'argv');
  const shim = join(dir, 'podman');
  // logs every argument, and the mode of any --env-file podman is given, then runs the real one
  writeFileSync(
    shim,
    `#!/bin/sh\nprev=''\nfor a in "$@"; do echo "$a" >> '${log}'; [ "$prev" = --env-file ] && stat -c 'mode %a' "$a" >> '${log}'; prev="$a"; done\nexec '${PODMAN}' "$@"\n`,
  );
  chmodSync(shim, 0o755);
  const runtime = createPodmanRuntime({ ...podmanTestOptions(), podmanPath: shim, api });
  const secret = `argv-secret-${process.pid}`;
  const pem = `-----BEGIN-----\n${secret}-pem\n-----END-----`;
  const inst = await runtime.create({
    name: `runt-env-argv-${api ? 'api' : 'cli'}-${process.pid}`,
    image: TEST_IMAGE,
    command: ['/bin/sh', '-c', 'echo "got $TOKEN"; printf "%s\\n" "$PEM" | sed -n 2p'],
    env: { TOKEN: secret, PEM: pem },
  });
  await runtime.start(inst.id);
  expect(await runtime.wait(inst.id)).toEqual({ exitCode: 0 });
  let out = '';
  for await (const c of runtime.logs(inst.id, { follow: false })) out += c.data;
  await runtime.remove(inst.id);
  await runtime.close();
  expect(out).toBe(`got ${secret}\n${secret}-pem\n`);
  const argv = readFileSync(log, 'utf8');
  expect(argv).not.toContain(secret);
  if (api) {
    expect(argv).not.toContain('create'); // created through the service
  } else {
    expect(argv).toContain('--env-file');
    expect(argv).toContain('mode 600');
  }
});

it('CLI only, a run it starts costs four podman calls: create, start, wait, rm (no inspect, no stop of an exited container)', async () => {
  // (`container` is the `container inspect` at the end.)
  expect(await podmanCallsOfOneRun(false)).toEqual(['create', 'start', 'wait', 'rm', 'container']);
});

it('with the REST API, create, start, wait and remove cost no podman process (one service serves them)', async () => {
  // `container inspect` at the end is a CLI call; `system` is the service, started by `create`.
  expect(await podmanCallsOfOneRun(true)).toEqual(['system', 'container']);
});

it('available() starts no REST service (a short command that only asks pays for no podman process); the first create starts it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'runt-podman-lazy-'));
  const log = join(dir, 'calls');
  const shim = join(dir, 'podman');
  writeFileSync(shim, `#!/bin/sh\necho "$1" >> '${log}'\nexec '${PODMAN}' "$@"\n`);
  chmodSync(shim, 0o755);
  const runtime = createPodmanRuntime({ ...podmanTestOptions(), podmanPath: shim, api: true });
  try {
    expect((await runtime.available()).available).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 500));
    // before: `system` (podman system service) was started here too
    expect(readFileSync(log, 'utf8').trim().split('\n')).toEqual(['version']);
  } finally {
    await runtime.close();
  }
});

it('a REST start whose connection breaks after the service started the container is not repeated through the CLI (the workload runs once)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'runt-podman-once-'));
  // A `podman system service` stand-in that starts the container for real, then drops the
  // connection before answering (as a service killed mid-request does); every other request is
  // dropped too, so the adapter falls back to the CLI for it.
  const service = join(dir, 'service.cjs');
  writeFileSync(
    service,
    `const { createServer } = require('node:http');
const { execFileSync } = require('node:child_process');
const socket = process.argv[process.argv.length - 1].replace(/^unix:\\/\\//, '');
createServer((req, res) => {
  if (req.url === '/_ping') return res.end('OK');
  const start = /\\/containers\\/([^/]+)\\/start$/.exec(req.url ?? '');
  if (req.method === 'POST' && start) execFileSync(${JSON.stringify(PODMAN)}, ['start', '--', decodeURIComponent(start[1])]);
  req.socket.destroy();
}).listen(socket);
`,
  );
  const shim = join(dir, 'podman');
  writeFileSync(
    shim,
    `#!/bin/sh\nif [ "$1" = system ]; then exec '${process.execPath}' '${service}' "$@"; fi\nexec '${PODMAN}' "$@"\n`,
  );
  chmodSync(shim, 0o755);
  const runtime = createPodmanRuntime({ ...podmanTestOptions(), podmanPath: shim, api: true });
  const inst = await runtime.create({
    name: `runt-once-${process.pid}`,
    image: TEST_IMAGE,
    command: ['/bin/sh', '-c', 'echo ran'],
  });
  try {
    await runtime.start(inst.id);
    expect(await runtime.wait(inst.id)).toEqual({ exitCode: 0 });
    const { stdout } = await promisify(execFile)(PODMAN, ['logs', inst.id]);
    expect(stdout).toBe('ran\n');
  } finally {
    await runtime.remove(inst.id);
    await runtime.close();
  }
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
