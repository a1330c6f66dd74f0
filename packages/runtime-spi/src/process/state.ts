import { randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { InstanceSpec } from '../runtime.js';
import type { ProcessIdentity } from './proc-stat.js';

/** What `instance.json` holds. */
export interface InstanceRecord {
  id: string;
  name: string;
  spec: InstanceSpec;
  labels: Record<string, string>;
  cwd: string;
  createdAt: string;
}

/** What the 0600 `pid` file holds. */
export interface PidRecord extends ProcessIdentity {
  startedAt: string;
}

export interface ExitRecord {
  exitCode: number;
  signal?: string;
  finishedAt?: string;
}

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Instance ids are directory names: no separators, no dot-dot, nothing a shell would mangle. */
export function isValidId(id: string): boolean {
  return ID_PATTERN.test(id) && !id.includes('..');
}

/**
 * The files of one instance under the state root. Output goes to files, never pipes, so a
 * workload that outlives its adapter never blocks writing to a dead reader.
 */
export class InstanceFiles {
  readonly dir: string;
  constructor(
    stateDir: string,
    readonly id: string,
  ) {
    this.dir = join(stateDir, id);
  }
  get record(): string {
    return join(this.dir, 'instance.json');
  }
  get pid(): string {
    return join(this.dir, 'pid');
  }
  /** The pid the exit wrapper wrote itself, before running the workload. */
  get wrapperPid(): string {
    return join(this.dir, 'wrapper-pid');
  }
  get exit(): string {
    return join(this.dir, 'exitcode');
  }
  get work(): string {
    return join(this.dir, 'work');
  }
  log(stream: 'stdout' | 'stderr'): string {
    return join(this.dir, `${stream}.log`);
  }

  readRecord(): Promise<InstanceRecord | undefined> {
    return readJson<InstanceRecord>(this.record);
  }
  readPid(): Promise<PidRecord | undefined> {
    return readJson<PidRecord>(this.pid);
  }
  async readWrapperPid(): Promise<number | undefined> {
    const text = await readFile(this.wrapperPid, 'utf8').catch(() => '');
    const pid = Number.parseInt(text.trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  }
  /** The exit code the wrapper (or `stop`, after a kill) wrote: "<code>[ <signal>]". */
  async readExit(): Promise<ExitRecord | undefined> {
    let text: string;
    try {
      text = await readFile(this.exit, 'utf8');
    } catch {
      return undefined;
    }
    const [code, signal] = text.trim().split(/\s+/);
    const exitCode = Number.parseInt(code ?? '', 10);
    if (Number.isNaN(exitCode)) return undefined;
    return { exitCode, ...(signal ? { signal } : {}) };
  }
  /**
   * Deletes the instance directory. Its own files (and an empty `work`) go with a few
   * synchronous unlinks — a recursive `fs.promises.rm` costs milliseconds of CPU for the same
   * handful of files; anything else in it (a workload's files in `work`, a leftover temp file)
   * makes the directory non-empty, and the recursive removal takes the rest.
   */
  async remove(): Promise<void> {
    try {
      for (const file of [
        this.record,
        this.pid,
        this.wrapperPid,
        this.exit,
        this.log('stdout'),
        this.log('stderr'),
      ])
        unlinkIfThere(file);
      try {
        rmdirSync(this.work);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
      rmdirSync(this.dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      await rm(this.dir, { recursive: true, force: true });
    }
  }
}

/**
 * Creates `dir` (and its parents) 0700. Synchronously, as the other writes below: a few
 * metadata calls on a local disk take microseconds, and a trip through the thread pool each
 * (a worker to wake and the loop to wake again) costs more than the call — on a loaded host,
 * milliseconds per trip, on the path from `create` to the workload running.
 */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/**
 * Writes a 0600 file atomically: temp file in the same directory, then rename (no fsync: a
 * reader sees the old file or the whole new one; after a power loss it may be missing or empty,
 * which readers treat as never written — the wrapper's own `wrapper-pid` covers a lost `pid`).
 */
export function writeFileAtomic(path: string, data: string): void {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, data, { mode: 0o600 });
  renameSync(tmp, path);
}

function unlinkIfThere(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}
