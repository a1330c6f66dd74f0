import { createFakeRuntime } from '@runt/runtime-spi/fake';
import { describe, expect, it } from 'vitest';
import { followRunOutput } from '../src/run-output.js';

async function follow(
  script: string,
  opts: { skip?: { stdout: number; stderr: number }; readyLine?: string; ready?: boolean } = {},
) {
  const runtime = createFakeRuntime();
  const inst = await runtime.create({ name: 'out', command: ['/bin/sh', '-c', script], sourcePath: '/tmp' });
  await runtime.start(inst.id);
  const chunks: Array<[string, string]> = [];
  let readyCalls = 0;
  const errors: unknown[] = [];
  await followRunOutput({
    runtime,
    instanceId: inst.id,
    signal: new AbortController().signal,
    skip: opts.skip ?? { stdout: 0, stderr: 0 },
    readyLine: opts.readyLine,
    ready: () => opts.ready === true || readyCalls > 0,
    onChunk: (stream, data) => chunks.push([stream, data]),
    onReady: () => readyCalls++,
    onError: (e) => errors.push(e),
  });
  await runtime.close();
  const text = (s: string) =>
    chunks
      .filter(([k]) => k === s)
      .map(([, d]) => d)
      .join('');
  return { stdout: text('stdout'), stderr: text('stderr'), readyCalls, errors };
}

describe('followRunOutput with the fake runtime', () => {
  it('hands over both streams until the workload exits', async () => {
    expect(await follow('echo one; echo two >&2; echo three')).toMatchObject({
      stdout: 'one\nthree\n',
      stderr: 'two\n',
      readyCalls: 0,
      errors: [],
    });
  });

  it('skips what a previous agent already sent, per stream', async () => {
    expect(
      await follow('echo one; echo two >&2; echo three', { skip: { stdout: 6, stderr: 2 } }),
    ).toMatchObject({ stdout: 'ree\n', stderr: 'o\n' });
  });

  it('calls onReady once when the ready line appears, not before and not again', async () => {
    expect(
      (await follow('echo starting; echo server is up now; echo up again', { readyLine: 'is up' }))
        .readyCalls,
    ).toBe(1);
    expect((await follow('echo starting; echo done', { readyLine: 'is up' })).readyCalls).toBe(0);
    expect((await follow('echo is up', { readyLine: 'is up', ready: true })).readyCalls).toBe(0);
  });

  it('tells onError when the instance cannot be followed', async () => {
    const runtime = createFakeRuntime();
    const errors: unknown[] = [];
    await followRunOutput({
      runtime,
      instanceId: 'missing',
      signal: new AbortController().signal,
      skip: { stdout: 0, stderr: 0 },
      ready: () => false,
      onChunk: () => undefined,
      onReady: () => undefined,
      onError: (e) => errors.push(e),
    });
    expect(errors).toHaveLength(1);
  });
});
