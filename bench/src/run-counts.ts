import { percentile } from './stats.js';

/**
 * A counter of a Prometheus text exposition summed per value of one label (`reason`, `kind`):
 * `{}` when the counter has no sample yet, undefined when the control plane does not export it.
 *
 * @example
 * countersByLabel(text, 'runt_cp_run_requeues_total', 'reason') // { 'offer-timeout': 1 }
 */
export function countersByLabel(
  text: string,
  name: string,
  label: string,
): Record<string, number> | undefined {
  let found = false;
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (line.startsWith(`# TYPE ${name} `)) found = true;
    if (!line.startsWith(`${name} `) && !line.startsWith(`${name}{`)) continue;
    found = true;
    const labels = line.slice(name.length, line.lastIndexOf(' '));
    const value = new RegExp(`[{,]${label}="((?:[^"\\\\]|\\\\.)*)"`).exec(labels)?.[1] ?? '';
    out[value] = (out[value] ?? 0) + Number(line.split(' ').pop());
  }
  return found ? out : undefined;
}

/** `after − before` per label value, the zeros left out. */
export function labelDelta(
  after: Record<string, number> | undefined,
  before: Record<string, number> | undefined,
): Record<string, number> | undefined {
  if (!after || !before) return undefined;
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

/**
 * Whole counts by label value, for a line: `0`, or `2 (offer-timeout 1, declined 1)` — one
 * re-queue in 10,000 runs shows, where a per-run figure with two decimals reads 0.00.
 */
export function describeCounts(c: Record<string, number> | undefined): string {
  if (!c) return '-';
  const entries = Object.entries(c).sort((a, b) => b[1] - a[1]);
  const total = entries.reduce((s, [, n]) => s + n, 0);
  return entries.length === 0 ? '0' : `${total} (${entries.map(([k, n]) => `${k} ${n}`).join(', ')})`;
}

/** One run's path through a phase, in ms since the epoch (database clock). */
export interface RunTiming {
  id: string;
  createdMs: number;
  offeredMs: number | null;
  acceptedMs: number | null;
  startedMs: number | null;
  finishedMs: number;
  attempt: number;
  workstation: string | null;
}

/**
 * A phase's stragglers: when its last run finished more than `gapMs` after the 99th percentile
 * of its finishes (the phase's time, and so its rate, is the last finish: one run held back
 * seconds reads as a slow phase), its `n` last-finished runs; undefined when there is no such gap.
 *
 * @example
 * const s = stragglers(runs); if (s) console.log(describeStragglers(s, phaseStartMs));
 */
export function stragglers(
  runs: readonly RunTiming[],
  o: { gapMs?: number; n?: number } = {},
): { p99Ms: number; lastMs: number; slowest: RunTiming[] } | undefined {
  if (runs.length === 0) return undefined;
  const p99Ms = percentile(
    runs.map((r) => r.finishedMs),
    99,
  );
  const lastMs = Math.max(...runs.map((r) => r.finishedMs));
  if (lastMs - p99Ms <= (o.gapMs ?? 1000)) return undefined;
  const slowest = [...runs].sort((a, b) => b.finishedMs - a.finishedMs).slice(0, o.n ?? 5);
  return { p99Ms, lastMs, slowest };
}

/** The stragglers for a line, each step in seconds after the phase's start. */
export function describeStragglers(s: NonNullable<ReturnType<typeof stragglers>>, startMs: number): string {
  const at = (ms: number | null) => (ms === null ? '-' : `+${((ms - startMs) / 1000).toFixed(3)} s`);
  return (
    `stragglers: the last run finished ${((s.lastMs - s.p99Ms) / 1000).toFixed(2)} s after the p99 finish; the last ${s.slowest.length}: ` +
    s.slowest
      .map(
        (r) =>
          `${r.id} (created ${at(r.createdMs)}, offered ${at(r.offeredMs)}, accepted ${at(r.acceptedMs)}, started ${at(r.startedMs)}, finished ${at(r.finishedMs)}, attempt ${r.attempt}, ${r.workstation ?? 'no workstation'})`,
      )
      .join('; ')
  );
}
