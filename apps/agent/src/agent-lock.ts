import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { AgentError } from './agent-error.js';

/**
 * One agent per credential and state directory on this machine: `agent.lock` (0600) in the
 * state dir holds the owner's pid and, on Linux, its start time (`<pid> <start>`, clock ticks
 * since boot from `/proc/<pid>/stat`). A second agent refuses to start with one line instead of
 * fighting the first over the workstation's link; a lock whose process is gone (kill -9, a
 * reboot) is taken over — also when its pid now names another process (a reused pid: a
 * different start time; a container restarted gives its agent the same low pid again). A lock
 * holding the pid only (written by an older agent, or where there is no `/proc`) is judged by
 * the pid alone. Released when this process exits.
 *
 * @example
 * const release = acquireAgentLock('/home/me/.config/runt/state');
 */
export function acquireAgentLock(stateDir: string): () => void {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const path = join(stateDir, 'agent.lock');
  const start = processState(process.pid)?.startTime;
  const mine = start === undefined ? `${process.pid}` : `${process.pid} ${start}`;
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, `${mine}\n`);
      closeSync(fd);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 2) throw e;
      const owner = parseLock(readFileSync(path, 'utf8'));
      if (owner && owner.pid !== process.pid && isAlive(owner.pid, owner.startTime)) {
        throw new AgentError(
          'config-invalid',
          `another agent (pid ${owner.pid}) is running for this workstation (${path}); stop it first`,
        );
      }
      try {
        unlinkSync(path); // its owner is gone
      } catch {
        // another starter removed it first: try again
      }
    }
  }
  const release = () => {
    try {
      if (readFileSync(path, 'utf8').trim() === mine) unlinkSync(path);
    } catch {
      // already gone
    }
  };
  process.once('exit', release);
  return release;
}

/** `<pid>` (an older agent's lock) or `<pid> <start time>`; undefined if it names no pid. */
function parseLock(text: string): { pid: number; startTime: number | undefined } | undefined {
  const [pidText, startText] = text.trim().split(/\s+/);
  const pid = Number.parseInt(pidText ?? '', 10);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const startTime = startText === undefined ? undefined : Number(startText);
  return { pid, startTime: Number.isFinite(startTime) ? startTime : undefined };
}

/** What `/proc/<pid>/stat` tells of a process (Linux). */
export interface ProcessState {
  /** The state letter (field 3): R, S, D, Z (zombie), X (dead), … */
  state: string;
  /** When it started, in clock ticks since boot (field 22): tells it from a later process with the same pid. */
  startTime: number;
}

/**
 * The state and start time of `pid` from `/proc/<pid>/stat`; undefined when it has no entry
 * (gone, or no `/proc`: macOS).
 *
 * @example
 * processState(process.pid) // { state: 'R', startTime: 123456 }
 */
export function processState(pid: number): ProcessState | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) S …": the fields after the last ')' (comm may hold one, or spaces) are fixed;
  // fields[0] is field 3 (the state), fields[19] field 22 (the start time).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', startTime: Number(fields[19]) };
}

/**
 * Whether `pid` is a running process — the one that started at `startTime` when that is known.
 * A zombie (killed, not yet reaped by its parent — in a container whose PID 1 reaps every ~2 s,
 * a restarted agent found its killed predecessor so) answers `kill(pid, 0)` but has exited: where
 * `/proc` tells the state, it counts as gone; so does a live process whose start time differs
 * from the lock's (the pid was reused).
 */
function isAlive(pid: number, startTime: number | undefined): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    // EPERM: it runs under another user; /proc still tells its state and start time.
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const proc = processState(pid);
  if (!proc) return true; // no /proc (macOS) or gone since: the signal's answer stands
  if (proc.state === 'Z' || proc.state === 'X') return false;
  return startTime === undefined || proc.startTime === startTime;
}
