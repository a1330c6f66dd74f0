import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Run } from '@runt/protocol';
import { sampleRun } from '@runt/protocol/testing';
import { createFakeRuntime } from '@runt/runtime-spi/fake';
import { c as createTar } from 'tar';
import { describe, expect, it } from 'vitest';
import {
  instanceSpec,
  prepareRun,
  RUN_ID_LABEL,
  WORKSTATION_LABEL,
  type PrepareRunOptions,
} from '../src/run-prepare.js';

const run = (over: Partial<Run> = {}): Run =>
  sampleRun({ id: 'run_p1', command: ['/bin/sh', '-c', 'echo hi'], env: { A: '1' }, attempt: 2, ...over });

function options(over: Partial<PrepareRunOptions> = {}): PrepareRunOptions & { created: string[] } {
  const created: string[] = [];
  return {
    run: run(),
    runtime: createFakeRuntime(),
    workRoot: mkdtempSync(join(tmpdir(), 'runt-prepare-')),
    workstationId: 'ws_1',
    download: () => Promise.reject(new Error('no bundle expected')),
    work: new AbortController().signal,
    cancel: new AbortController().signal,
    cancelMessage: () => 'cancelled by request',
    onCreated: async (id) => void created.push(id),
    created,
    ...over,
  };
}

async function tarOf(files: Record<string, string>): Promise<Uint8Array> {
  const dir = mkdtempSync(join(tmpdir(), 'runt-bundle-src-'));
  for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, name), body);
  const chunks: Buffer[] = [];
  for await (const c of createTar({ cwd: dir, portable: true }, Object.keys(files)) as AsyncIterable<Buffer>)
    chunks.push(Buffer.from(c));
  return new Uint8Array(Buffer.concat(chunks));
}

describe('prepareRun with the fake runtime and real files', () => {
  it('unpacks the bundle into a fresh 0700 working directory, creates the labelled instance and starts it', async () => {
    const bytes = await tarOf({ 'job.txt': 'payload' });
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const runtime = createFakeRuntime();
    const o = options({
      run: run({ bundle: { sha256 } }),
      runtime,
      download: async (sha) => (sha === sha256 ? bytes : undefined),
    });
    const r = await prepareRun(o);
    expect('started' in r).toBe(true);
    const id = (r as { started: string }).started;
    expect(o.created).toEqual([id]);
    const workdir = join(o.workRoot, 'run_p1');
    expect(readFileSync(join(workdir, 'job.txt'), 'utf8')).toBe('payload');
    expect(statSync(workdir).mode & 0o777).toBe(0o700);
    const inst = await runtime.inspect(id);
    expect(inst?.labels).toMatchObject({ [RUN_ID_LABEL]: 'run_p1', [WORKSTATION_LABEL]: 'ws_1' });
    expect(inst?.name).toBe('runt-run_p1-2');
    expect(await runtime.wait(id)).toMatchObject({ exitCode: 0 });
  });

  it('makes no working directory for a runtime that never reads one (fake) unless there is a bundle', async () => {
    const runtime = createFakeRuntime();
    const o = options({ runtime });
    expect('started' in (await prepareRun(o))).toBe(true);
    expect(existsSync(join(o.workRoot, 'run_p1'))).toBe(false);
    expect(runtime.callsOf('create')[0]!.args[0]).not.toHaveProperty('sourcePath');
    // A runtime that may read `sourcePath` (process, docker, podman) still gets one.
    const reads = createFakeRuntime();
    const p = options({ runtime: { ...reads, usesSourcePath: true } });
    expect('started' in (await prepareRun(p))).toBe(true);
    expect(statSync(join(p.workRoot, 'run_p1')).isDirectory()).toBe(true);
    expect(reads.callsOf('create')[0]!.args[0]).toMatchObject({ sourcePath: join(p.workRoot, 'run_p1') });
  });

  it('ends with the failure kind the runtime error maps to', async () => {
    expect(await prepareRun(options({ runtime: { unavailable: 'no docker here' } }))).toEqual({
      outcome: { status: 'failed', failure_kind: 'runtime-unavailable', failure_message: 'no docker here' },
    });
    const pulled = await prepareRun(
      options({ run: run({ image: 'nope:1' }), runtime: createFakeRuntime({ images: [] }) }),
    );
    expect(pulled).toMatchObject({ outcome: { status: 'failed', failure_kind: 'image-unavailable' } });
    const badBundle = await prepareRun(
      options({
        run: run({ bundle: { sha256: 'a'.repeat(64) } }),
        download: async () => new Uint8Array([1, 2, 3]),
      }),
    );
    expect(badBundle).toMatchObject({ outcome: { status: 'failed', failure_kind: 'start-failed' } });
    const closed = createFakeRuntime();
    await closed.close();
    expect(await prepareRun(options({ runtime: closed }))).toMatchObject({
      outcome: { status: 'failed', failure_kind: 'runtime-unavailable' },
    });
  });

  it('ends cancelled when cancelled before the start, and with nothing when the run was dropped during the download', async () => {
    const cancel = new AbortController();
    cancel.abort();
    expect(await prepareRun(options({ cancel: cancel.signal }))).toEqual({
      outcome: { status: 'cancelled', failure_kind: 'cancelled', failure_message: 'cancelled by request' },
    });
    expect(
      await prepareRun(
        options({ run: run({ bundle: { sha256: 'b'.repeat(64) } }), download: async () => undefined }),
      ),
    ).toEqual({ dropped: true });
  });
});

describe('instanceSpec', () => {
  it('is what the conditional spreads it replaced made, for every field set or unset', () => {
    // The spread form prepareRun used before (the reference), kept here only as the oracle.
    const spreadSpec = (r: Run, workdir: string | undefined, secretEnv?: Record<string, string>) => ({
      name: `runt-${r.id}-${r.attempt}`.replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 120),
      ...(workdir ? { sourcePath: workdir } : {}),
      ...(r.image ? { image: r.image } : {}),
      ...(r.command.length > 0 ? { command: r.command } : {}),
      env: { ...r.env, ...(secretEnv ?? {}) },
      ...(r.workdir ? { workdir: r.workdir } : {}),
      labels: { [RUN_ID_LABEL]: r.id, [WORKSTATION_LABEL]: 'ws_1' },
      limits: {
        ...(r.resources.cpus ? { cpus: r.resources.cpus } : {}),
        ...(r.resources.memory_bytes ? { memoryBytes: r.resources.memory_bytes } : {}),
      },
    });
    const runs = [
      run(),
      run({ command: [], env: {} }),
      run({ image: 'alpine:3', workdir: '/src', resources: { cpus: 1.5, memory_bytes: 1 << 30 } }),
      run({ resources: { cpus: 0, memory_bytes: 0 } }),
      run({ id: 'run with spaces/ü', attempt: 1 }),
      run({ id: 'r'.repeat(200) }),
      run({ id: 'r'.repeat(110) }),
      run({ id: 'r'.repeat(115) }),
    ];
    for (const r of runs)
      for (const workdir of [undefined, '/tmp/w'])
        for (const secretEnv of [undefined, {}, { A: 'secret', B: '2' }] as Array<
          Record<string, string> | undefined
        >) {
          const spec = instanceSpec(r, workdir, { workstationId: 'ws_1', secretEnv });
          expect(spec).toStrictEqual(spreadSpec(r, workdir, secretEnv));
          expect(spec.env).not.toBe(r.env);
        }
  });
});
