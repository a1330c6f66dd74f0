import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { stderrTail, waitReady } from '../src/index.js';

// The replicas bench waits for each replica's /readyz. A replica that exits first (its port
// taken, its database refused) used to be polled for the whole 120 s deadline and reported as
// "did not become ready", its stderr discarded (2026-12-03, docs/benchmarks.md).
describe('waitReady', () => {
  it('fails as soon as the process exits, with what it wrote to stderr', async () => {
    const proc = spawn(
      process.execPath,
      [
        '-e',
        'setTimeout(() => { console.error("listen EADDRINUSE: address already in use 127.0.0.1:1"); process.exit(3) }, 50)',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const said = stderrTail(proc);
    const t0 = Date.now();
    // 127.0.0.1:9 (discard): nothing answers there, so only the exit can end the wait early
    await expect(waitReady(proc, 'http://127.0.0.1:9', 'cp2', said, 20_000)).rejects.toThrow(
      /^cp2 exited \(3\) before it was ready: listen EADDRINUSE: address already in use 127\.0\.0\.1:1$/,
    );
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('returns once /readyz answers ok', async () => {
    const proc = spawn(
      process.execPath,
      [
        '-e',
        `const s = require('node:http').createServer((q, r) => r.end(q.url === '/readyz' ? 'ok' : '')).listen(0, '127.0.0.1', () => console.log(s.address().port)); setTimeout(() => s.close(), 20000).unref()`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    try {
      const port = await new Promise<string>((resolve) =>
        proc.stdout.once('data', (b: Buffer) => resolve(b.toString().trim())),
      );
      await waitReady(proc, `http://127.0.0.1:${port}`, 'cp1', stderrTail(proc), 20_000);
    } finally {
      proc.kill();
    }
  });
});
