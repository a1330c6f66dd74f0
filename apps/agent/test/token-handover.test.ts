import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { takeToken } from '../src/token-handover.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A real pipe (a FIFO): the read end's descriptor, and the write end the "parent" holds. */
function pipe(): { readFd: number; writeFd: number } {
  const dir = mkdtempSync(join(tmpdir(), 'runt-handover-'));
  dirs.push(dir);
  const path = join(dir, 'fifo');
  execFileSync('mkfifo', [path]);
  const readFd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const writeFd = openSync(path, constants.O_WRONLY);
  return { readFd, writeFd };
}

describe('takeToken', () => {
  it('reads the token from the descriptor and reports the parent gone exactly once when the pipe ends (issue 8)', async () => {
    const { readFd, writeFd } = pipe();
    let calls = 0;
    const env: NodeJS.ProcessEnv = { RUNT_CLOUD_TOKEN_FD: String(readFd), RUNT_CLOUD_TOKEN: 'from-env' };
    writeSync(writeFd, 'wst_secret\n');
    const handover = await takeToken(env, () => calls++);
    expect(handover).toEqual({ token: 'wst_secret', fromParent: true });
    expect(env.RUNT_CLOUD_TOKEN).toBeUndefined();
    expect(env.RUNT_CLOUD_TOKEN_FD).toBeUndefined();
    closeSync(writeFd); // the parent is gone (as after kill -9): the pipe ends, then closes
    const deadline = Date.now() + 10_000;
    while (calls === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    // end and close both reach the reader; a second call would be a second SIGTERM to the agent,
    // which means "stop the runs now" and skips the shutdown grace.
    await new Promise((r) => setTimeout(r, 500));
    expect(calls).toBe(1);
  });
});
