import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { traceWriter } from './trace.js';

describe('traceWriter', () => {
  it('appends `t step key` lines to its file within 200 ms: now for each key, or at a given time', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'runt-trace-'));
    try {
      const file = join(dir, 'trace');
      const w = traceWriter(file);
      expect(w.tracing).toBe(true);
      const before = Date.now();
      w.mark('offer.sent', ['run_a', 'run_b']);
      w.mark('claim.returned', 'run_a');
      w.at('db.commit', 'run_a', 1_700_000_000_000.125);
      await new Promise((r) => setTimeout(r, 300));
      const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
      expect(lines.map((l) => l.split(' ').slice(1).join(' '))).toEqual([
        'offer.sent run_a',
        'offer.sent run_b',
        'claim.returned run_a',
        'db.commit run_a',
      ]);
      const t = Number(lines[0]!.split(' ')[0]);
      expect(t).toBeGreaterThanOrEqual(before - 1);
      expect(t).toBeLessThanOrEqual(Date.now() + 1);
      expect(lines[0]!.split(' ')[0]).toMatch(/^\d+\.\d{3}$/);
      expect(lines[3]!.split(' ')[0]).toBe('1700000000000.125');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('does nothing without a file', () => {
    for (const file of [undefined, '']) {
      const w = traceWriter(file);
      expect(w.tracing).toBe(false);
      w.mark('x', 'k');
      w.at('x', 'k', 1);
    }
  });
});
