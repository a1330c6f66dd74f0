import { appendFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { LogChunk } from '../runtime.js';
import { readLogFiles } from './logs.js';
import { InstanceFiles } from './state.js';

/** A real instance directory with its two log files, and a follow over it that counts its looks. */
function follow() {
  const stateDir = mkdtempSync(join(tmpdir(), 'runt-logs-'));
  const files = new InstanceFiles(stateDir, 'inst_1');
  mkdirSync(files.dir);
  writeFileSync(files.log('stdout'), 'first\n');
  writeFileSync(files.log('stderr'), '');
  let running = true;
  let looks = 0;
  const chunks: LogChunk[] = [];
  const ac = new AbortController();
  const done = (async () => {
    for await (const c of readLogFiles(files, { follow: true, runtime: 'process', signal: ac.signal }, () => {
      looks++;
      return Promise.resolve(running);
    }))
      chunks.push(c);
  })();
  return {
    files,
    chunks,
    looks: () => looks,
    text: () => chunks.map((c) => c.data).join(''),
    end: () => (running = false),
    done,
  };
}

const until = async (check: () => boolean, ms = 5_000) => {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('following a process instance’s log files', () => {
  it('looks when the files change, not every 50 ms: an idle follow of 1.5 s looks a few times', async () => {
    const f = follow();
    await until(() => f.text() === 'first\n');
    const before = f.looks();
    await new Promise((r) => setTimeout(r, 1_500));
    // A 50 ms poll looked ~30 times here; the watch looks only at its 1 s fallback.
    expect(f.looks() - before).toBeLessThanOrEqual(3);

    // Written while idle: read (the change wakes it), in order, nothing lost.
    appendFileSync(f.files.log('stdout'), 'second\n');
    appendFileSync(f.files.log('stderr'), 'oops\n');
    await until(() => f.text().includes('second\n') && f.text().includes('oops\n'));

    // The instance ends (its exit file appears): the follow reads what is left and returns.
    appendFileSync(f.files.log('stdout'), 'last\n');
    f.end();
    writeFileSync(f.files.exit, '0');
    await f.done;
    expect(
      f.chunks
        .filter((c) => c.stream === 'stdout')
        .map((c) => c.data)
        .join(''),
    ).toBe('first\nsecond\nlast\n');
  });

  it('reads a chatty workload in batches, every byte once', async () => {
    const f = follow();
    let written = 'first\n';
    for (let i = 0; i < 200; i++) {
      const line = `line ${i}\n`;
      appendFileSync(f.files.log('stdout'), line);
      written += line;
      if (i % 20 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    await until(() => f.text() === written);
    f.end();
    writeFileSync(f.files.exit, '0');
    await f.done;
    expect(f.text()).toBe(written);
    // Gathered for 50 ms between reads, not a read per line.
    expect(f.chunks.length).toBeLessThan(20);
  });
});
