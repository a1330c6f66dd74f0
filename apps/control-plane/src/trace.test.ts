import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';

afterEach(() => vi.unstubAllEnvs());

describe("the control plane's trace", () => {
  it('writes to RUNT_TRACE_FILE; a span’s steps, recorded before their run was known, under each run', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cp-trace-'));
    try {
      const file = join(dir, 'trace');
      vi.stubEnv('RUNT_TRACE_FILE', file);
      vi.resetModules();
      const { tracing, traceMark, requestSpan } = await import('./trace.js');
      expect(tracing).toBe(true);
      const req = {};
      requestSpan(req)!.mark('http.received');
      requestSpan(req)!.mark('body.parsed');
      traceMark('insert.returned', ['run_a', 'run_b']);
      requestSpan(req)!.end(['run_a', 'run_b']);
      await new Promise((r) => setTimeout(r, 300));
      const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
      expect(lines.map((l) => l.split(' ').slice(1).join(' '))).toEqual([
        'insert.returned run_a',
        'insert.returned run_b',
        'http.received run_a',
        'body.parsed run_a',
        'http.received run_b',
        'body.parsed run_b',
      ]);
      // The span's marks keep their own times: before the insert's.
      expect(Number(lines[2]!.split(' ')[0])).toBeLessThanOrEqual(Number(lines[0]!.split(' ')[0]));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
