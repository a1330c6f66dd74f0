import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RuntimeError, RuntimeRegistry, isRuntimeError } from '@runt/runtime-spi';
import { createFakeRuntime } from '@runt/runtime-spi/fake';
import { createProcessRuntime } from '@runt/runtime-spi/process';
import { isWorkspaceError } from './errors.js';
import { WorkspaceManager } from './workspace-manager.js';
import { WorkspaceStore } from './workspace-store.js';

const root = mkdtempSync(join(tmpdir(), 'runt-wsm-'));
const registries: RuntimeRegistry[] = [];
afterAll(async () => {
  await Promise.all(registries.map((r) => r.close()));
});

function setup(extra: (r: RuntimeRegistry) => void = () => {}) {
  const dir = mkdtempSync(join(root, 'case-'));
  const sources = join(dir, 'my-repo');
  mkdirSync(sources);
  writeFileSync(join(sources, 'hello.txt'), 'hi\n');
  const registry = new RuntimeRegistry().register('process', () =>
    createProcessRuntime({ stateDir: join(dir, 'process-state') }),
  );
  extra(registry);
  registries.push(registry);
  const store = new WorkspaceStore({ configDir: join(dir, 'config') });
  return { dir, sources, registry, store, manager: new WorkspaceManager({ store, registry }) };
}

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, what: string): Promise<T> {
  for (let i = 0; i < 300; i++) {
    const v = await fn();
    if (ok(v)) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('WorkspaceManager on the process runtime', () => {
  it('runs the whole lifecycle: init → list → stop → start → terminal → remove', async () => {
    const { sources, manager, registry } = setup();
    const created = await manager.init({ sources, runtime: 'process' });
    expect(created).toMatchObject({
      name: 'my-repo',
      runtime: 'process',
      state: 'running',
      sourcePath: sources,
    });
    expect(created.instanceId).toEqual(expect.any(String));
    expect(created.runtimeInfo).toMatchObject({ state: 'running' });

    let [view] = await manager.list();
    expect(view).toMatchObject({ name: 'my-repo', liveState: 'running' });

    await manager.stop('my-repo', { timeoutMs: 5_000 });
    [view] = await manager.list();
    expect(view).toMatchObject({ state: 'stopped', liveState: 'stopped' });

    // terminal starts a stopped workspace first, in the sources directory
    const { session } = await manager.terminal('my-repo', { cols: 80, rows: 24 });
    let out = '';
    session.onData((d) => (out += d));
    session.write('cat hello.txt; echo "sum=$((40+2))"\n');
    await until(
      async () => out,
      (o) => o.includes('sum=42'),
      'terminal output',
    );
    expect(out).toContain('hi');
    session.write('exit\n');
    await session.exit;
    [view] = await manager.list();
    expect(view?.liveState).toBe('running');

    const removed = await manager.remove('my-repo');
    expect(await manager.list()).toEqual([]);
    const runtime = await registry.get('process');
    expect(await runtime.inspect(removed.instanceId!)).toBeUndefined();
  });

  it('refuses a second workspace with the same name and a sources path that is not a directory', async () => {
    const { sources, manager } = setup();
    await manager.init({ sources, runtime: 'process', name: 'twin' });
    const taken = await manager.init({ sources, runtime: 'process', name: 'twin' }).catch((e: unknown) => e);
    expect(isWorkspaceError(taken, 'name-taken')).toBe(true);
    const notDir = await manager
      .init({ sources: join(sources, 'hello.txt'), runtime: 'process' })
      .catch((e: unknown) => e);
    expect(isWorkspaceError(notDir, 'invalid-argument')).toBe(true);
    await manager.remove('twin');
  });
});

describe('WorkspaceManager with scripted failures (fake runtime)', () => {
  it('an unknown runtime fails with the list of known runtimes and registers nothing', async () => {
    const { sources, manager, store } = setup();
    const e = await manager.init({ sources, runtime: 'nope' }).catch((x: unknown) => x);
    expect(isRuntimeError(e, 'runtime-unavailable')).toBe(true);
    expect((e as Error).message).toContain('known runtimes: process');
    expect(await store.list()).toEqual([]);
  });

  it('a failed start leaves neither a registration nor an instance behind', async () => {
    const fake = createFakeRuntime({ failures: { start: new RuntimeError('start-failed', 'boom') } });
    const { sources, manager, store } = setup((r) => r.register('fake', () => fake));
    const e = await manager.init({ sources, runtime: 'fake' }).catch((x: unknown) => x);
    expect(isWorkspaceError(e, 'runtime-failed')).toBe(true);
    expect((e as Error).message).toContain('boom');
    expect(await store.list()).toEqual([]);
    expect(await fake.list()).toEqual([]);
  });

  it('remove --force unregisters even when the runtime fails; without it the workspace stays', async () => {
    const fake = createFakeRuntime();
    const { sources, manager, store } = setup((r) => r.register('fake', () => fake));
    await manager.init({ sources, runtime: 'fake', name: 'stuck' });
    fake.failNext('stop', new RuntimeError('runtime-unavailable', 'engine down'));
    const e = await manager.remove('stuck').catch((x: unknown) => x);
    expect((e as Error).message).toContain('engine down');
    expect(await store.list()).toHaveLength(1);
    fake.failNext('stop', new RuntimeError('runtime-unavailable', 'engine down'));
    await manager.remove('stuck', { force: true });
    expect(await store.list()).toEqual([]);
  });
});
