import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { holdBenchLock } from './bench-lock.js';

/** Whether `flock -n` (what a bench's `flock` would do without waiting) gets the lock now. */
const free = (file: string) => spawnSync('flock', ['-n', file, 'true']).status === 0;

describe('the bench lock held by a test', () => {
  it('is the flock a bench takes: held until released, and made when the file does not exist yet', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-lock-'));
    try {
      const file = join(dir, 'runt-bench.lock');
      const release = await holdBenchLock(file);
      expect(free(file)).toBe(false);
      await release();
      expect(free(file)).toBe(true);
      // A second holder waits for the first.
      const first = await holdBenchLock(file);
      let second: (() => Promise<void>) | undefined;
      const waiting = holdBenchLock(file).then((r) => (second = r));
      await new Promise((r) => setTimeout(r, 200));
      expect(second).toBeUndefined();
      await first();
      await waiting;
      expect(free(file)).toBe(false);
      await second!();
      expect(free(file)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
