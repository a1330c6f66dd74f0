import Docker from 'dockerode';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { describeRuntimeConformance, collectLogs, expectRuntimeError } from '../conformance/index.js';
import { assertEngineReady, dockerTestOptions, MISSING_IMAGE, TEST_IMAGE, testDockerRuntime, uniqueName } from '../../test/engines.js';
import { createDockerRuntime, resolveDockerEndpoint } from './index.js';

const PACKAGE_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const TEST_LABELS = { 'runt.test': `docker-${process.pid}` };

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

describe('docker adapter specifics', () => {
  const runtime = testDockerRuntime();
  const engine = new Docker(resolveDockerEndpoint(dockerTestOptions()).options);
  const dirs: string[] = [];

  afterAll(async () => {
    for (const inst of await runtime.list({ labels: TEST_LABELS })) await runtime.remove(inst.id);
    await runtime.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'runt-docker-test-'));
    dirs.push(dir);
    return dir;
  };

  it('mounts sourcePath at /workspace (default workdir) and configPath read-only with RUNT_CONFIG_PATH', async () => {
    const source = tempDir();
    writeFileSync(join(source, 'hello.txt'), 'from-host\n');
    const config = join(tempDir(), 'config.json');
    writeFileSync(config, '{"k":"v"}\n');
    const script = 'pwd; cat hello.txt; echo "cfg=$RUNT_CONFIG_PATH"; cat "$RUNT_CONFIG_PATH"; echo made > from-container.txt; echo x > "$RUNT_CONFIG_PATH" || echo config-is-read-only';
    const created = await runtime.create({
      name: uniqueName('runt-mounts'),
      image: TEST_IMAGE,
      sourcePath: source,
      configPath: config,
      command: ['/bin/sh', '-c', script],
      labels: TEST_LABELS,
    });
    await runtime.start(created.id);
    expect(await runtime.wait(created.id)).toEqual({ exitCode: 0 });
    const { stdout, stderr } = await collectLogs(runtime.logs(created.id));
    expect(stdout.split('\n')).toEqual(['/workspace', 'from-host', 'cfg=/etc/runt/config', '{"k":"v"}', 'config-is-read-only', '']);
    expect(stderr).toMatch(/read-only/i);
    expect(readFileSync(join(source, 'from-container.txt'), 'utf8')).toBe('made\n');
    expect(readFileSync(config, 'utf8')).toBe('{"k":"v"}\n');
  });

  it('sets cpu and memory limits and labels (runt.managed added) as the engine reports them', async () => {
    const created = await runtime.create({
      name: uniqueName('runt-limits'),
      image: TEST_IMAGE,
      command: ['true'],
      labels: { ...TEST_LABELS, 'caller.label': 'yes' },
      limits: { cpus: 1.5, memoryBytes: 64 * 1024 * 1024 },
    });
    const info = await engine.getContainer(created.id).inspect();
    expect(info.HostConfig.NanoCpus).toBe(1_500_000_000);
    expect(info.HostConfig.Memory).toBe(64 * 1024 * 1024);
    expect(info.Config.Labels).toMatchObject({ 'runt.managed': 'true', 'caller.label': 'yes' });
    expect(created.labels).toMatchObject({ 'runt.managed': 'true', 'caller.label': 'yes' });
    expect(info.Name).toBe(`/${created.name}`);
  });

  it('rejects a relative sourcePath and a spec without image as invalid-spec', async () => {
    await expectRuntimeError(runtime.create({ name: uniqueName('runt-bad'), image: TEST_IMAGE, sourcePath: 'rel/path' }), 'invalid-spec');
    await expectRuntimeError(runtime.create({ name: uniqueName('runt-bad') }), 'invalid-spec');
  });

  it('reports a start failure (missing program) as start-failed', async () => {
    const created = await runtime.create({ name: uniqueName('runt-nostart'), image: TEST_IMAGE, command: ['/no/such/program'], labels: TEST_LABELS });
    await expectRuntimeError(runtime.start(created.id), 'start-failed');
  });

  it('is unavailable, naming the socket, when the engine socket does not exist', async () => {
    const bogus = join(tempDir(), 'no-docker.sock');
    const rt = createDockerRuntime({ socketPath: bogus });
    const availability = await rt.available();
    expect(availability.available).toBe(false);
    expect(availability.reason).toContain(bogus);
    const error = (await expectRuntimeError(rt.inspect('anything'), 'runtime-unavailable')) as Error;
    expect(error.message).toContain(bogus);
    await expectRuntimeError(rt.create({ name: uniqueName('runt-x'), image: TEST_IMAGE }), 'runtime-unavailable');
    expect(existsSync(bogus)).toBe(false);
    await rt.close();
  });
});

describe('resolveDockerEndpoint', () => {
  it('prefers socketPath, then host, then DOCKER_HOST, then the default socket', () => {
    expect(resolveDockerEndpoint({ socketPath: '/a.sock', host: 'unix:///b.sock' }).label).toBe('/a.sock');
    expect(resolveDockerEndpoint({ host: 'unix:///b.sock' }).options).toEqual({ socketPath: '/b.sock' });
    expect(resolveDockerEndpoint({ host: 'tcp://10.0.0.2:2376' }).options).toEqual({ host: '10.0.0.2', port: '2376', protocol: 'http' });
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
