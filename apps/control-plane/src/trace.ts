import { appendFileSync } from 'node:fs';

/**
 * A per-step trace of the submit and offer paths, for latency work only (issue 10): with
 * `RUNT_TRACE_FILE` set, `traceMark(step, key)` records the wall-clock time (ms, sub-ms
 * precision, comparable across processes of one machine: `performance.timeOrigin + now()`), the
 * step and a key (a run id, or `req:<n>` before the run has one), and appends them to that
 * file as `t step key` lines (written out every 200 ms and at exit). Without it every call
 * returns at once. `bench/src/replicas-bench.ts` (`BENCH_TRACE=1`) reads the files back.
 *
 * @example
 * if (tracing) traceMark('insert.returned', run.id);
 */
const file = process.env.RUNT_TRACE_FILE;
export const tracing = file !== undefined && file !== '';

let lines: string[] = [];
let timer: NodeJS.Timeout | undefined;

function flush(): void {
  timer = undefined;
  if (lines.length === 0) return;
  const text = lines.join('');
  lines = [];
  appendFileSync(file!, text);
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

/** Records `step` for `key` at `t` (ms since the epoch: another process's clock, as Postgres' `clock_timestamp()`). */
export function traceAt(step: string, key: string, t: number): void {
  if (!tracing) return;
  lines.push(`${t.toFixed(3)} ${step} ${key}\n`);
  timer ??= setTimeout(flush, 200).unref();
}

/** Steps recorded before their key was known, re-keyed once it is (a request → its run). */
export class TraceSpan {
  readonly #marks: Array<[number, string]> = [];
  mark(step: string): void {
    if (tracing) this.#marks.push([performance.timeOrigin + performance.now(), step]);
  }
  /** Writes the marks so far under `keys`. */
  end(keys: string | readonly string[]): void {
    if (!tracing) return;
    for (const k of typeof keys === 'string' ? [keys] : keys)
      for (const [t, step] of this.#marks) lines.push(`${t.toFixed(3)} ${step} ${k}\n`);
    this.#marks.length = 0;
    timer ??= setTimeout(flush, 200).unref();
  }
}

const spans = new WeakMap<object, TraceSpan>();

/** The span of one HTTP request (its `Request` object), made on first use; undefined unless tracing. */
export function requestSpan(req: object): TraceSpan | undefined {
  if (!tracing) return undefined;
  let s = spans.get(req);
  if (!s) spans.set(req, (s = new TraceSpan()));
  return s;
}
