import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { isWorkspaceError } from './errors.js';
import { WorkspaceStore, type WorkspaceRecord } from './workspace-store.js';

const record = (name: string): WorkspaceRecord => ({
  id: `wsp_${name}`,
  name,
  runtime: 'process',
  sourcePath: '/tmp',
  state: 'stopped',
  createdAt: new Date().toISOString(),
  updatedAt: new Date().toISOString(),
});

describe('WorkspaceStore', () => {
  it('writes atomically: a 0600 file, no temp files left, readable back', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'runt-wss-')), 'cfg');
    const store = new WorkspaceStore({ configDir: dir });
    await store.update((all) => void all.push(record('a')));
    expect(statSync(store.file).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect((await store.get('a')).id).toBe('wsp_a');
    expect((await store.get('wsp_a')).name).toBe('a');
  });

  it('a throwing change writes nothing', async () => {
    const store = new WorkspaceStore({ configDir: mkdtempSync(join(tmpdir(), 'runt-wss-')) });
    await store.update((all) => void all.push(record('keep')));
    const before = readFileSync(store.file, 'utf8');
    await expect(
      store.update((all) => {
        all.length = 0;
        throw new Error('no');
      }),
    ).rejects.toThrow('no');
    expect(readFileSync(store.file, 'utf8')).toBe(before);
  });

  it('reports a missing workspace and a corrupt file clearly', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'runt-wss-'));
    const store = new WorkspaceStore({ configDir: dir });
    const missing = await store.get('nope').catch((e: unknown) => e);
    expect(isWorkspaceError(missing, 'not-found')).toBe(true);
    writeFileSync(store.file, '{"version":1,');
    const corrupt = await store.list().catch((e: unknown) => e);
    expect(isWorkspaceError(corrupt, 'state-corrupt')).toBe(true);
  });

  it('parallel updates from separate processes lose nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'runt-wss-'));
    const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    const script = `
      const { WorkspaceStore } = await import(${JSON.stringify(dist)});
      const store = new WorkspaceStore({ configDir: process.argv[1] });
      for (let i = 0; i < 10; i++) {
        const name = process.argv[2] + '-' + i;
        await store.update((all) => { all.push({ id: 'wsp_' + name, name, runtime: 'process', sourcePath: '/tmp', state: 'stopped', createdAt: '', updatedAt: '' }); });
      }`;
    await Promise.all(
      ['p', 'q', 'r', 's'].map((p) => execa('node', ['--input-type=module', '-e', script, dir, p])),
    );
    const names = (await new WorkspaceStore({ configDir: dir }).list()).map((w) => w.name).sort();
    expect(names).toHaveLength(40);
    expect(new Set(names).size).toBe(40);
  });
});
