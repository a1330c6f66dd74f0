import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cpuProfDir } from '../src/cpu-profile-top.js';

describe('BENCH_CPU_PROF', () => {
  const root = mkdtempSync(join(tmpdir(), 'runt-prof-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('creates a directory that does not exist yet (the phase profiles were written into it: ENOENT)', () => {
    const dir = join(root, 'not', 'yet');
    expect(cpuProfDir({ BENCH_CPU_PROF: dir })).toBe(dir);
    expect(existsSync(dir)).toBe(true);
    // Again: an existing directory is fine.
    expect(cpuProfDir({ BENCH_CPU_PROF: dir })).toBe(dir);
  });

  it('is undefined when unset', () => {
    expect(cpuProfDir({})).toBeUndefined();
  });
});
