import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';

afterEach(() => vi.unstubAllEnvs());

describe("the agent's trace", () => {
  it('writes to <RUNT_TRACE_FILE>.agent-<pid>, beside the control plane’s file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agent-trace-'));
    try {
      const base = join(dir, 'trace');
      vi.stubEnv('RUNT_TRACE_FILE', base);
      vi.resetModules();
      const { tracing, traceMark } = await import('./trace.js');
      expect(tracing).toBe(true);
      traceMark('agent.exited', 'run_1');
      await new Promise((r) => setTimeout(r, 300));
      expect(readFileSync(`${base}.agent-${process.pid}`, 'utf8')).toMatch(
        /^\d+\.\d{3} agent\.exited run_1\n$/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
