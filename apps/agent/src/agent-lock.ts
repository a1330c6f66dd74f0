import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { AgentError } from './agent-error.js';

/**
 * One agent per credential and state directory on this machine: `agent.lock` (0600) in the
 * state dir holds the owner's pid. A second agent refuses to start with one line instead of
 * fighting the first over the workstation's link; a lock whose process is gone (kill -9, a
 * reboot) is taken over. Released when this process exits.
 *
 * @example
 * const release = acquireAgentLock('/home/me/.config/runt/state');
 */
export function acquireAgentLock(stateDir: string): () => void {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const path = join(stateDir, 'agent.lock');
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 2) throw e;
      const owner = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
        throw new AgentError(
          'config-invalid',
          `another agent (pid ${owner}) is running for this workstation (${path}); stop it first`,
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
      if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
    } catch {
      // already gone
    }
  };
  process.once('exit', release);
  return release;
}

/**
 * Whether `pid` is a running process. A zombie (killed, not yet reaped by its parent — in a
 * container whose PID 1 reaps every ~2 s, a restarted agent found its killed predecessor so)
 * answers `kill(pid, 0)` but has exited: where `/proc` tells the state, it counts as gone.
 */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return true; // no /proc (macOS) or gone since: the signal's answer stands
  }
  // "pid (comm) S …": the state letter follows the last ')' (comm may hold one).
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}
