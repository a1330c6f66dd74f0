import { readFileSync, readdirSync } from 'node:fs';
import { processState } from '@runt/agent';

/** Clock ticks per second of /proc's utime/stime (USER_HZ; 100 on every Linux we run on). */
const TICKS_PER_SECOND = 100;

/** utime + stime of one process in seconds (all its threads), from /proc/<pid>/stat; 0 if it is gone. */
export function processCpuSeconds(pid: number): number {
  return cpuSecondsOf(`/proc/${pid}/stat`);
}

/**
 * utime + stime of a process's main thread alone (the one running its JavaScript), from
 * /proc/<pid>/task/<pid>/stat; 0 if it is gone. The rest of `processCpuSeconds` is its helper
 * threads: V8's (concurrent compilers, GC markers and sweepers) and libuv's pool (file writes,
 * fsync).
 */
export function mainThreadCpuSeconds(pid: number): number {
  return cpuSecondsOf(`/proc/${pid}/task/${pid}/stat`);
}

/** utime + stime (or stime alone, `kernelOnly`) in seconds from a /proc `stat` file; 0 if it is gone. */
function cpuSecondsOf(file: string, kernelOnly = false): number {
  let stat: string;
  try {
    stat = readFileSync(file, 'utf8');
  } catch {
    return 0;
  }
  // The command name (field 2) may hold spaces; the fields after its closing ')' are fixed.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): utime is field 14, stime field 15.
  return ((kernelOnly ? 0 : Number(fields[11])) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** Write syscalls a process made so far (`syscw` of /proc/<pid>/io; a socket `write` or `writev` is one); 0 if it is gone. */
export function processWrites(pid: number): number {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    return Number(/^syscw: (\d+)$/m.exec(io)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/**
 * When a process started (clock ticks since boot), to tell it from a later one with the same pid:
 * the agent's own parse (its `agent.lock` records it for the same reason).
 */
export function processStartTime(pid: number): number | undefined {
  return processState(pid)?.startTime;
}

/** The parent pid of a process, or undefined if it is gone. */
function parentPid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/** `pid` and all its live descendants (walks /proc once). */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const ppid = parentPid(Number(name));
    if (ppid === undefined) continue;
    const list = children.get(ppid) ?? [];
    list.push(Number(name));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop()!;
    out.push(p);
    stack.push(...(children.get(p) ?? []));
  }
  return out;
}

/**
 * CPU seconds of a changing set of processes over a window: `start()` records each pid's
 * utime+stime; `sample()` (any number of times, last one at the end of the window) records
 * them again. A pid first seen after `start()` counts from 0; a pid gone counts what was last read.
 *
 * @example
 * const cpu = new CpuMeter(); cpu.start([pid]); …; cpu.sample([pid]); cpu.seconds()
 */
export class CpuMeter {
  private readonly first = new Map<number, number>();
  private readonly last = new Map<number, number>();

  /** `read`: a pid's CPU seconds so far (default: the whole process's; `mainThreadCpuSeconds`: its main thread's). */
  constructor(private readonly read: (pid: number) => number = processCpuSeconds) {}

  start(pids: Iterable<number>): void {
    for (const pid of pids) {
      const s = this.read(pid);
      this.first.set(pid, s);
      this.last.set(pid, s);
    }
  }

  sample(pids: Iterable<number>): void {
    for (const pid of pids) {
      const s = this.read(pid);
      if (!this.first.has(pid)) this.first.set(pid, 0);
      this.last.set(pid, Math.max(s, this.last.get(pid) ?? 0));
    }
  }

  /** Seconds of CPU used by the sampled processes between `start()` and the last `sample()`. */
  seconds(): number {
    let total = 0;
    for (const [pid, end] of this.last) total += end - (this.first.get(pid) ?? 0);
    return total;
  }
}

/**
 * stime alone of one process in seconds (its time in the kernel: for a Postgres backend its
 * socket reads and writes, WAL writes and fsyncs), from /proc/<pid>/stat; 0 if it is gone.
 */
export function systemCpuSeconds(pid: number): number {
  return cpuSecondsOf(`/proc/${pid}/stat`, true);
}

/**
 * Nanoseconds one process has run on a CPU so far (the first field of /proc/<pid>/schedstat: the
 * scheduler's own sum, not rounded to clock ticks); undefined if it is gone or not shown.
 */
export function processRunNs(pid: number): number | undefined {
  try {
    const n = Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}
