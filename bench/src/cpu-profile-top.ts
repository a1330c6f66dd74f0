import { mkdirSync, readFileSync } from 'node:fs';

/**
 * The directory `BENCH_CPU_PROF` names for `--cpu-prof` profiles, created if missing (Node's
 * `--cpu-prof-dir` creates it at the process's exit, but a phase's own profile is written by
 * the control plane's host before that, and failed with ENOENT); undefined when unset.
 *
 * @example
 * const dir = cpuProfDir(); // BENCH_CPU_PROF=/tmp/prof → '/tmp/prof', now existing
 */
export function cpuProfDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dir = env.BENCH_CPU_PROF;
  if (dir) mkdirSync(dir, { recursive: true });
  return dir;
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

/** One line of a profile's top list: self time share of a function. */
export interface ProfileEntry {
  name: string;
  where: string;
  selfPercent: number;
}

/** Shortens a script URL to what identifies it: the package and file (`@runt/control-plane/dist/…`, `pg/lib/client.js`). */
function shortUrl(url: string): string {
  if (!url) return '';
  const path = url.replace(/^file:\/\//, '');
  const pnpm = path.match(/node_modules\/\.pnpm\/[^/]+\/node_modules\/(.+)$/);
  if (pnpm) return pnpm[1]!;
  const nm = path.match(/node_modules\/(.+)$/);
  if (nm) return nm[1]!;
  const ws = path.match(/\/(apps|packages)\/([^/]+\/.+)$/) ?? path.match(/\/(bench)\/(.+)$/);
  return ws ? `${ws[1]}/${ws[2]}` : path;
}

/**
 * The `n` functions with the most self time in a V8 `.cpuprofile` (from `node --cpu-prof`),
 * grouped by function and location, as a share of the busy samples (idle left out; GC and
 * `(program)` kept, as V8 names them).
 *
 * @example
 * for (const e of cpuProfileTop('cp.cpuprofile', 10)) console.log(e.selfPercent, e.name, e.where);
 */
export function cpuProfileTop(file: string, n = 15): ProfileEntry[] {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[] };
  const byKey = new Map<string, ProfileEntry & { hits: number }>();
  let total = 0;
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    const f = node.callFrame;
    if (hits === 0 || f.functionName === '(idle)') continue;
    total += hits;
    const where = f.url ? `${shortUrl(f.url)}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName}@${where}`;
    const e = byKey.get(key) ?? { name: f.functionName || '(anonymous)', where, selfPercent: 0, hits: 0 };
    e.hits += hits;
    byKey.set(key, e);
  }
  return [...byKey.values()]
    .sort((a, b) => b.hits - a.hits)
    .slice(0, n)
    .map(({ name, where, hits }) => ({ name, where, selfPercent: (hits * 100) / Math.max(1, total) }));
}

/** One slice of a profile's timeline: busy time and what it went to. */
export interface ProfileSlice {
  /** Seconds from the profile's start. */
  from: number;
  /** Milliseconds of samples that were not idle. */
  busyMs: number;
  /** Shares of the busy time (%): V8's `(garbage collector)`, `(program)` (native, compiler), and the top functions by self time. */
  gcPercent: number;
  programPercent: number;
  top: ProfileEntry[];
}

/**
 * A `.cpuprofile`'s samples cut into slices of `seconds` (by the samples' own time stamps), each
 * with its busy time, its GC and `(program)` shares and its `n` top functions: to tell an
 * agent's first seconds (warm-up) from its later ones. Slices with no busy sample are left out.
 *
 * @example
 * for (const s of cpuProfileSlices('agent.cpuprofile', 1)) console.log(s.from, s.busyMs, s.gcPercent);
 */
export function cpuProfileSlices(file: string, seconds: number, n = 5): ProfileSlice[] {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as {
    nodes: ProfileNode[];
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(profile.nodes.map((x) => [x.id, x]));
  const slices = new Map<
    number,
    { busy: number; gc: number; program: number; fns: Map<string, ProfileEntry & { us: number }> }
  >();
  let t = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    // A sample's time is the interval up to the next one (the last: its own delta).
    const us = profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0;
    const node = byId.get(profile.samples[i]!);
    const name = node?.callFrame.functionName ?? '';
    if (!node || name === '(idle)') continue;
    const k = Math.floor(t / 1e6 / seconds);
    const s = slices.get(k) ?? { busy: 0, gc: 0, program: 0, fns: new Map() };
    slices.set(k, s);
    s.busy += us;
    if (name === '(garbage collector)') s.gc += us;
    if (name === '(program)') s.program += us;
    const where = node.callFrame.url
      ? `${shortUrl(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`
      : '';
    const key = `${name}@${where}`;
    const e = s.fns.get(key) ?? { name: name || '(anonymous)', where, selfPercent: 0, us: 0 };
    e.us += us;
    s.fns.set(key, e);
  }
  return [...slices.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([k, s]) => ({
      from: k * seconds,
      busyMs: s.busy / 1000,
      gcPercent: (s.gc * 100) / Math.max(1, s.busy),
      programPercent: (s.program * 100) / Math.max(1, s.busy),
      top: [...s.fns.values()]
        .sort((a, b) => b.us - a.us)
        .slice(0, n)
        .map(({ name, where, us }) => ({ name, where, selfPercent: (us * 100) / Math.max(1, s.busy) })),
    }));
}
