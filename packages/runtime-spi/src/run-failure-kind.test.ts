import { describe, expect, it } from 'vitest';
import { RuntimeError, type RuntimeErrorCode } from './errors.js';
import { runFailureKind } from './run-failure-kind.js';
import { createFakeRuntime } from './fake/index.js';

describe('runFailureKind', () => {
  it('maps every runtime error code at both stages', () => {
    const codes: RuntimeErrorCode[] = [
      'runtime-unavailable',
      'image-unavailable',
      'instance-not-found',
      'instance-exists',
      'start-failed',
      'exec-failed',
      'invalid-spec',
      'aborted',
      'timeout',
      'not-started',
      'internal',
    ];
    for (const code of codes) {
      const e = new RuntimeError(code, code);
      const expected = (stage: 'image' | 'start') =>
        code === 'runtime-unavailable'
          ? 'runtime-unavailable'
          : code === 'image-unavailable'
            ? 'image-unavailable'
            : stage === 'image'
              ? 'image-unavailable'
              : 'start-failed';
      expect(runFailureKind(e, 'image')).toBe(expected('image'));
      expect(runFailureKind(e, 'start')).toBe(expected('start'));
    }
    expect(runFailureKind(new Error('boom'), 'image')).toBe('image-unavailable');
    expect(runFailureKind('boom', 'start')).toBe('start-failed');
  });

  it('maps what the fake runtime really throws', async () => {
    const rt = createFakeRuntime({ images: ['alpine:3'] });
    expect(runFailureKind(await rt.ensureImage('nope:1').catch((x: unknown) => x), 'image')).toBe(
      'image-unavailable',
    );
    const missing = await rt
      .create({ name: 'a', image: 'alpine:3', sourcePath: '/tmp' })
      .catch((x: unknown) => x);
    expect(runFailureKind(missing, 'start')).toBe('image-unavailable');
    await rt.close();
    expect(runFailureKind(await rt.ensureImage('alpine:3').catch((x: unknown) => x), 'image')).toBe(
      'runtime-unavailable',
    );
  });
});
