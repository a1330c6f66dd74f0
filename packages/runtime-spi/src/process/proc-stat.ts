import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';

/**
 * What identifies one process over time: its pid, its start time and the boot it started
 * in. A pid alone is not enough: the kernel reuses pids, and a pid file that outlived its
 * process must never make a stranger look like our instance.
 */
export interface ProcessIdentity {
  pid: number;
  /** Linux: /proc/<pid>/stat field 22 (clock ticks since boot); elsewhere `ps -o lstart`. */
  startTime: string;
  /** Linux boot id, so a reboot cannot make an old start time match by chance. */
  bootId?: string;
}

const hasProc = async (): Promise<boolean> =>
  readFile('/proc/self/stat', 'utf8').then(
    () => true,
    () => false,
  );
let procAvailable: Promise<boolean> | undefined;

/** Parses /proc/<pid>/stat; the command name may hold spaces and parentheses, so split after the last ')'. */
export function parseProcStat(stat: string): { state: string; startTime: string } | undefined {
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  const fields = stat
    .slice(close + 2)
    .trim()
    .split(/\s+/);
  // fields[0] is field 3 (state); field 22 (starttime) is fields[19].
  const state = fields[0];
  const startTime = fields[19];
  if (state === undefined || startTime === undefined) return undefined;
  return { state, startTime };
}

let bootId: Promise<string | undefined> | undefined;
/** The Linux boot id (read once: it cannot change while this process lives). */
export function readBootId(): Promise<string | undefined> {
  bootId ??= readFile('/proc/sys/kernel/random/boot_id', 'utf8').then(
    (s) => s.trim(),
    () => undefined,
  );
  return bootId;
}

/** The start time of a live (not zombie) process, or undefined when there is none. */
export async function readStartTime(pid: number): Promise<string | undefined> {
  procAvailable ??= hasProc();
  if (await procAvailable) {
    let stat: string;
    try {
      // Synchronously: /proc is in memory, a read takes microseconds, a trip through the thread
      // pool costs more than the read (wait, stop and logs look here every few ms).
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return undefined;
    }
    const parsed = parseProcStat(stat);
    if (!parsed || parsed.state === 'Z' || parsed.state === 'X') return undefined;
    return parsed.startTime;
  }
  return new Promise((resolve) => {
    execFile('ps', ['-o', 'stat=,lstart=', '-p', String(pid)], (error, stdout) => {
      const line = stdout.trim();
      if (error || !line || line.startsWith('Z')) return resolve(undefined);
      resolve(line.replace(/^\S+\s+/, ''));
    });
  });
}

/** The identity of a process now, for writing to a pid file. */
export async function identify(pid: number): Promise<ProcessIdentity | undefined> {
  const [startTime, bootId] = await Promise.all([readStartTime(pid), readBootId()]);
  if (startTime === undefined) return undefined;
  return { pid, startTime, ...(bootId === undefined ? {} : { bootId }) };
}

/** True when the process recorded in `identity` is still the one alive under that pid. */
export async function isSameProcessAlive(identity: ProcessIdentity): Promise<boolean> {
  const [startTime, bootId] = await Promise.all([readStartTime(identity.pid), readBootId()]);
  if (startTime === undefined || startTime !== identity.startTime) return false;
  return identity.bootId === undefined || bootId === undefined || identity.bootId === bootId;
}

/** True when a live process's arguments include `arg` (/proc/<pid>/cmdline exactly, else within `ps -o args=`). */
export async function hasArgument(pid: number, arg: string): Promise<boolean> {
  procAvailable ??= hasProc();
  if (await procAvailable) {
    const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    return raw.split('\0').includes(arg);
  }
  return new Promise((resolve) => {
    execFile('ps', ['-o', 'args=', '-p', String(pid)], (error, stdout) => {
      const line = stdout.trim();
      resolve(!error && line.includes(arg));
    });
  });
}
