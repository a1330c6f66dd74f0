import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  collectExec,
  collectLogs,
  expectRuntimeError,
  waitForTerminalText,
} from '../src/conformance/index.js';
import type { Runtime } from '../src/runtime.js';
import { TEST_IMAGE, uniqueName } from './engines.js';

/** What the engine itself says about a container (read without the adapter). */
export interface EngineView {
  name: string;
  cpus: number;
  memoryBytes: number;
  labels: Record<string, string>;
}

export interface ContainerAdapterChecks {
  name: string;
  createRuntime(): Runtime;
  /** Reads the container straight from the engine (API or CLI), not through the adapter. */
  engineInspect(id: string): Promise<EngineView>;
  /** An adapter pointed at something that does not exist, and the path its errors must name. */
  unreachable(dir: string): { runtime: Runtime; mustName: string };
}

/**
 * Checks what the conformance suite leaves to container adapters: the mount layout, limits and
 * labels as the engine reports them, terminal size and hang-up, spec validation, start failures
 * and an unreachable engine. Runs against the real engine.
 * @example
 * describeContainerAdapter({ name: 'docker', createRuntime: testDockerRuntime, engineInspect, unreachable });
 */
export function describeContainerAdapter(checks: ContainerAdapterChecks): void {
  describe(`${checks.name} adapter specifics`, () => {
    const runtime = checks.createRuntime();
    const labels = { 'runt.test': `${checks.name}-${process.pid}` };
    const dirs: string[] = [];
    const tempDir = () => {
      const dir = mkdtempSync(join(tmpdir(), `runt-${checks.name}-test-`));
      dirs.push(dir);
      return dir;
    };
    const running = async () => {
      const created = await runtime.create({
        name: uniqueName(`runt-${checks.name}`),
        image: TEST_IMAGE,
        labels,
      });
      return runtime.start(created.id);
    };
    /** `ps` inside the instance, through exec. */
    const processes = async (id: string) =>
      (await collectExec(await runtime.exec(id, ['ps', '-o', 'args']))).stdout;
    const eventually = async (what: string, check: () => Promise<boolean>) => {
      for (let i = 0; i < 100; i++) {
        if (await check()) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`never happened: ${what}`);
    };

    afterAll(async () => {
      for (const inst of await runtime.list({ labels })) await runtime.remove(inst.id);
      await runtime.close();
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    });

    it('mounts sourcePath at /workspace (default workdir) and configPath read-only with RUNT_CONFIG_PATH', async () => {
      const source = tempDir();
      writeFileSync(join(source, 'hello.txt'), 'from-host\n');
      const config = join(tempDir(), 'config.json');
      writeFileSync(config, '{"k":"v"}\n');
      const script =
        'pwd; cat hello.txt; echo "cfg=$RUNT_CONFIG_PATH"; cat "$RUNT_CONFIG_PATH"; echo made > from-container.txt; echo x > "$RUNT_CONFIG_PATH" || echo config-is-read-only';
      const created = await runtime.create({
        name: uniqueName(`runt-${checks.name}-mounts`),
        image: TEST_IMAGE,
        sourcePath: source,
        configPath: config,
        command: ['/bin/sh', '-c', script],
        labels,
      });
      await runtime.start(created.id);
      expect(await runtime.wait(created.id)).toEqual({ exitCode: 0 });
      const { stdout, stderr } = await collectLogs(runtime.logs(created.id));
      expect(stdout.split('\n')).toEqual([
        '/workspace',
        'from-host',
        'cfg=/etc/runt/config',
        '{"k":"v"}',
        'config-is-read-only',
        '',
      ]);
      expect(stderr).toMatch(/read-only/i);
      expect(readFileSync(join(source, 'from-container.txt'), 'utf8')).toBe('made\n');
      expect(readFileSync(config, 'utf8')).toBe('{"k":"v"}\n');
    });

    it('sets cpu and memory limits, name and labels (runt.managed added) as the engine reports them', async () => {
      const created = await runtime.create({
        name: uniqueName(`runt-${checks.name}-limits`),
        image: TEST_IMAGE,
        command: ['true'],
        labels: { ...labels, 'caller.label': 'yes' },
        limits: { cpus: 1.5, memoryBytes: 64 * 1024 * 1024 },
      });
      const seen = await checks.engineInspect(created.id);
      expect(seen.cpus).toBe(1.5);
      expect(seen.memoryBytes).toBe(64 * 1024 * 1024);
      expect(seen.name).toBe(created.name);
      expect(seen.labels).toMatchObject({ 'runt.managed': 'true', 'caller.label': 'yes' });
      expect(created.labels).toMatchObject({ 'runt.managed': 'true', 'caller.label': 'yes' });
    });

    it('gives the terminal its size, resizes it, and close() ends the program', async () => {
      const inst = await running();
      const session = await runtime.terminal(inst.id, { cols: 91, rows: 17 });
      const sink = { output: '' };
      session.onData((d) => {
        sink.output += d;
      });
      // Type once the shell has shown its prompt, as a person would.
      await waitForTerminalText(session, '#', sink);
      session.write('stty size | sed "s/^/size:/"\r');
      await waitForTerminalText(session, 'size:17 91', sink);
      session.resize(101, 33);
      session.write('stty size | sed "s/^/size:/"\r');
      // Podman forwards the new size to the container asynchronously (SIGWINCH to its client),
      // so a command typed right after may still see the old one: ask again until it lands.
      for (let attempt = 1; !sink.output.includes('size:33 101'); attempt++) {
        try {
          await waitForTerminalText(session, 'size:33 101', sink, 2_000);
        } catch (e) {
          if (attempt >= 10) throw e;
          session.write('stty size | sed "s/^/size:/"\r');
        }
      }
      session.write('sleep 4321\r');
      await eventually('sleep 4321 runs', async () => (await processes(inst.id)).includes('sleep 4321'));
      session.close();
      expect(typeof (await session.exit).exitCode).toBe('number');
      await eventually(
        'sleep 4321 ends after close()',
        async () => !(await processes(inst.id)).includes('sleep 4321'),
      );
    });

    it('aborting an exec rejects its exit with aborted and ends the program', async () => {
      const inst = await running();
      const abort = new AbortController();
      const handle = await runtime.exec(inst.id, ['sleep', '4322'], { signal: abort.signal });
      await eventually('sleep 4322 runs', async () => (await processes(inst.id)).includes('sleep 4322'));
      abort.abort();
      await expectRuntimeError(handle.exit, 'aborted');
      await eventually(
        'sleep 4322 ends after the abort',
        async () => !(await processes(inst.id)).includes('sleep 4322'),
      );
    });

    it('rejects a relative sourcePath and a spec without image as invalid-spec', async () => {
      await expectRuntimeError(
        runtime.create({ name: uniqueName('runt-bad'), image: TEST_IMAGE, sourcePath: 'rel/path' }),
        'invalid-spec',
      );
      await expectRuntimeError(runtime.create({ name: uniqueName('runt-bad') }), 'invalid-spec');
      await expectRuntimeError(runtime.create({ name: 'bad name!', image: TEST_IMAGE }), 'invalid-spec');
    });

    it('reports a start failure (missing program) as start-failed', async () => {
      const created = await runtime.create({
        name: uniqueName('runt-nostart'),
        image: TEST_IMAGE,
        command: ['/no/such/program'],
        labels,
      });
      await expectRuntimeError(runtime.start(created.id), 'start-failed');
    });

    it('exec in a stopped instance fails with exec-failed', async () => {
      const created = await runtime.create({ name: uniqueName('runt-stopped'), image: TEST_IMAGE, labels });
      await expectRuntimeError(runtime.exec(created.id, ['true']), 'exec-failed');
      await expectRuntimeError(runtime.terminal(created.id), 'exec-failed');
    });

    it('is unavailable, naming what is missing, when the engine cannot be reached', async () => {
      const { runtime: broken, mustName } = checks.unreachable(tempDir());
      const availability = await broken.available();
      expect(availability.available).toBe(false);
      expect(availability.reason).toContain(mustName);
      const error = (await expectRuntimeError(broken.inspect('anything'), 'runtime-unavailable')) as Error;
      expect(error.message).toContain(mustName);
      await expectRuntimeError(
        broken.create({ name: uniqueName('runt-x'), image: TEST_IMAGE }),
        'runtime-unavailable',
      );
      await expectRuntimeError(broken.ensureImage(TEST_IMAGE), 'runtime-unavailable');
      await broken.close();
    });
  });
}
