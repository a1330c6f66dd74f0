import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';

const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const children: ChildProcess[] = [];

/** Starts the real binary on port 0; stdout is a pipe the test reads only if told to. */
function start(dataDir: string, readStdout = true, env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [BIN], {
    env: { PATH: process.env.PATH, RUNT_PORT: '0', RUNT_DATA_DIR: dataDir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  if (readStdout) child.stdout.resume();
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += String(d)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  const ready = new Promise<string>((resolve, reject) => {
    child.stderr.on('data', () => {
      const url = /listening on (http:\/\/\S+)/.exec(stderr)?.[1];
      // The banner ends with the pairing line: a live code's command, or how to mint one.
      if (url && /pair a workstation[^\n]*\n {2}\S[^\n]*\n/.test(stderr)) resolve(url);
    });
    void exited.then(() => reject(new Error(`exited: ${stderr}`)));
  });
  ready.catch(() => {}); // awaited by the tests that expect a start
  return { child, ready, exited, stderr: () => stderr };
}

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

describe('runt-control-plane binary', () => {
  it('a second instance on the same data dir refuses with one line before opening the database', async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'runt-lock-')), '.runt');
    const first = start(dataDir);
    await first.ready;
    const second = start(dataDir);
    const { code } = await second.exited;
    expect(code).toBe(1);
    expect(second.stderr()).toBe(
      `runt-control-plane: the data dir ${dataDir} is in use by another control plane (pid ${first.child.pid}); stop it or set RUNT_DATA_DIR to another directory\n`,
    );
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
    expect(existsSync(join(dataDir, 'lock'))).toBe(false);
  }, 60_000);

  it('takes over the lock of an instance that was killed', async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'runt-lock-')), '.runt');
    const first = start(dataDir);
    await first.ready;
    first.child.kill('SIGKILL');
    await first.exited;
    expect(readFileSync(join(dataDir, 'lock'), 'utf8').trim()).toBe(String(first.child.pid));
    const second = start(dataDir);
    await second.ready;
    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
  }, 60_000);

  it('prints a live pairing code on the first start only, or when asked (issue 8, defect 9)', async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'runt-code-')), '.runt');
    const code = /--code [2-9A-Z-]{14}\n/;
    for (const [env, printed] of [
      [{}, true],
      [{}, false],
      [{ RUNT_PRINT_PAIRING_CODE: '1' }, true],
    ] as const) {
      const cp = start(dataDir, true, env);
      await cp.ready;
      expect(code.test(cp.stderr()), cp.stderr()).toBe(printed);
      if (!printed) expect(cp.stderr()).toContain('runt admin pairing-code');
      cp.child.kill('SIGTERM');
      expect((await cp.exited).code).toBe(0);
    }
  }, 90_000);

  it('SIGTERM finishes within the grace period even while nobody reads its stdout', async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'runt-stuck-')), '.runt');
    const cp = start(dataDir, false);
    const url = await cp.ready;
    // Every 4xx (here 401) is logged: fill the stdout pipe nobody drains until requests stop being answered.
    let answered = 0;
    for (let round = 0; round < 200; round++) {
      const batch = await Promise.all(
        Array.from({ length: 20 }, () =>
          fetch(`${url}/api/runs?pad=${'x'.repeat(200)}`, { signal: AbortSignal.timeout(1000) }).then(
            () => true,
            () => false,
          ),
        ),
      );
      answered += batch.filter(Boolean).length;
      if (batch.some((ok) => !ok)) break;
    }
    expect(answered).toBeGreaterThan(100);
    const sent = Date.now();
    cp.child.kill('SIGTERM');
    const exit = await Promise.race([
      cp.exited,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000)),
    ]);
    expect(exit, 'still running 20 s after SIGTERM').toBeDefined();
    expect(exit!.at - sent).toBeLessThan(15_000);
    expect(exit!.signal).toBeNull();
    expect(existsSync(join(dataDir, 'lock'))).toBe(false);
  }, 90_000);
});
