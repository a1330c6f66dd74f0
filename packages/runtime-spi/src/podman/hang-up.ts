import { readdir, readFile } from 'node:fs/promises';
import { sleep } from '../abort.js';

/** Env var put on a terminal's program so it can be found from the host after a hang-up. */
export const TERMINAL_MARKER_ENV = 'RUNT_TERMINAL_SESSION';
/** Env var put on an exec's program so an aborted exec can be ended from the host. */
export const EXEC_MARKER_ENV = 'RUNT_EXEC_SESSION';

/**
 * Host pids whose environment holds `name=value`. Podman runs containers on this host, so the
 * program of an exec session shows up in the host's /proc (readable as root or as the owner).
 * @example
 * await pidsWithEnv('RUNT_TERMINAL_SESSION', 'abc') // [12345]
 */
export async function pidsWithEnv(name: string, value: string): Promise<number[]> {
  const needle = Buffer.from(`\0${name}=${value}\0`);
  const found: number[] = [];
  const entries = await readdir('/proc').catch(() => [] as string[]);
  await Promise.all(
    entries
      .filter((e) => /^\d+$/.test(e))
      .map(async (pid) => {
        const env = await readFile(`/proc/${pid}/environ`).catch(() => undefined);
        if (env && Buffer.concat([Buffer.from([0]), env]).includes(needle)) found.push(Number(pid));
      }),
  );
  return found;
}

/**
 * Ends a terminal program whose `podman exec` client went away: detaching the client leaves
 * the program running in the container, so find it by its marker env and send each signal
 * in turn (default SIGHUP, then SIGKILL `graceMs` later if it is still there).
 * @example
 * await hangUpMarked('RUNT_TERMINAL_SESSION', sessionId);
 */
export async function hangUpMarked(
  name: string,
  value: string,
  signals: NodeJS.Signals[] = ['SIGHUP', 'SIGKILL'],
  graceMs = 500,
): Promise<void> {
  for (const [n, signal] of signals.entries()) {
    if (n > 0) await sleep(graceMs);
    const pids = await pidsWithEnv(name, value);
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, signal);
      } catch {
        // gone already, or not ours to signal
      }
    }
  }
}
