import { mkdirSync, openSync, readFileSync, rmSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';

/** A held lock on a data directory; `release()` is idempotent. */
export interface DataDirLock {
  path: string;
  release(): void;
}

/**
 * Takes the data directory for this process before anything opens the embedded database in it:
 * a `lock` file created exclusively, holding our pid. A lock whose pid no longer runs (the last
 * owner was killed) is taken over; a live one refuses with one line that names the pid and dir.
 *
 * @example
 * const lock = lockDataDir('./.runt'); try { ... } finally { lock.release(); }
 */
export function lockDataDir(dataDir: string): DataDirLock {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, 'lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      let held = true;
      return {
        path,
        release() {
          if (!held) return;
          held = false;
          rmSync(path, { force: true });
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const owner = Number.parseInt(readOwner(path), 10);
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isRunning(owner)) {
        throw new Error(
          `the data dir ${dataDir} is in use by another control plane (pid ${owner}); stop it or set RUNT_DATA_DIR to another directory`,
          { cause: e },
        );
      }
      rmSync(path, { force: true }); // stale: its owner is gone
    }
  }
  throw new Error(`could not lock the data dir ${dataDir} (${path} keeps reappearing)`);
}

function readOwner(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
