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
