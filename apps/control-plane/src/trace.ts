import { performance } from 'node:perf_hooks';
import { traceWriter } from '@runt/protocol/trace';

/**
 * A per-step trace of the submit and offer paths, for latency work only (issue 10): with
 * `RUNT_TRACE_FILE` set, `traceMark(step, key)` appends `t step key` lines to that file (the
 * step, a key — a run id, or `req:<n>` before the run has one — and the wall-clock time; see
 * `traceWriter`, which the agent's trace shares). Without it every call returns at once.
 * `bench/src/replicas-bench.ts` (`BENCH_TRACE=1`) reads the files back.
 *
 * @example
 * if (tracing) traceMark('insert.returned', run.id);
 */
export const { tracing, mark: traceMark, at: traceAt } = traceWriter(process.env.RUNT_TRACE_FILE);

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
      for (const [t, step] of this.#marks) traceAt(step, k, t);
    this.#marks.length = 0;
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
