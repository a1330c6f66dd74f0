import { appendFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/**
 * The agent's side of the control plane's per-step trace (`apps/control-plane/src/trace.ts`),
 * for latency work only (issue 9, the drain's cycle): with `RUNT_TRACE_FILE` set, `traceMark(step,
 * key)` appends `t step key` lines (wall-clock ms, comparable across processes of one machine)
 * to `<RUNT_TRACE_FILE>.agent-<pid>` (one file per agent: the control plane writes the named one),
 * written out every 200 ms and at exit. Without it every call returns at once.
 *
 * @example
 * if (tracing) traceMark('agent.exited', runId);
 */
const base = process.env.RUNT_TRACE_FILE;
export const tracing = base !== undefined && base !== '';
const file = tracing ? `${base}.agent-${process.pid}` : '';

let lines: string[] = [];
let timer: NodeJS.Timeout | undefined;

function flush(): void {
  timer = undefined;
  if (lines.length === 0) return;
  const text = lines.join('');
  lines = [];
  appendFileSync(file, text);
}

if (tracing) process.once('exit', flush);

/** Records `step` for `key` (or for each of `keys`) now; a no-op unless tracing. */
export function traceMark(step: string, key: string | readonly string[]): void {
  if (!tracing) return;
  const t = (performance.timeOrigin + performance.now()).toFixed(3);
  if (typeof key === 'string') lines.push(`${t} ${step} ${key}\n`);
  else for (const k of key) lines.push(`${t} ${step} ${k}\n`);
  timer ??= setTimeout(flush, 200).unref();
}
