import { describe, expect, it } from 'vitest';
import { isRuntimeError } from './errors.js';
import { createFakeRuntime } from './fake/index.js';
import { RuntimeRegistry } from './registry.js';

describe('RuntimeRegistry', () => {
  it('creates a runtime once, on first get, and lists names', async () => {
    let created = 0;
    const registry = new RuntimeRegistry()
      .register('fake', () => {
        created++;
        return createFakeRuntime();
      })
      .register('another', async () => createFakeRuntime({ name: 'another' }));
    expect(created).toBe(0);
    const [a, b] = await Promise.all([registry.get('fake'), registry.get('fake')]);
    expect(a).toBe(b);
    expect(created).toBe(1);
    expect(registry.names()).toEqual(['another', 'fake']);
    expect(registry.has('fake')).toBe(true);
  });

  it('never guesses: an unknown name fails with runtime-unavailable naming the known ones', async () => {
    const registry = new RuntimeRegistry().register('process', () => createFakeRuntime({ name: 'process' }));
    const error = await registry.get('dokcer').catch((e: unknown) => e);
    expect(isRuntimeError(error, 'runtime-unavailable')).toBe(true);
    expect((error as Error).message).toContain('dokcer');
    expect((error as Error).message).toContain('process');
  });

  it('refuses a second registration of a name unless told to replace it', async () => {
    const registry = new RuntimeRegistry().register('fake', () => createFakeRuntime());
    expect(() => registry.register('fake', () => createFakeRuntime())).toThrow(/already registered/);
    const replacement = createFakeRuntime({ name: 'replacement' });
    registry.register('fake', () => replacement, { replace: true });
    expect(await registry.get('fake')).toBe(replacement);
  });

  it('retries a factory that failed, and closes what it created', async () => {
    let attempts = 0;
    const rt = createFakeRuntime();
    const registry = new RuntimeRegistry().register('flaky', () => {
      if (++attempts === 1) throw new Error('first try fails');
      return rt;
    });
    await expect(registry.get('flaky')).rejects.toThrow('first try fails');
    expect(await registry.get('flaky')).toBe(rt);
    await registry.close();
    await expect(rt.create({ name: 'x' })).rejects.toSatisfy((e) => isRuntimeError(e, 'runtime-unavailable'));
  });
});
