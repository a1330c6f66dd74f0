import { appendFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/**
 * One process's per-step trace (`@runt/protocol/trace`), for latency work only (issues 9 and
 * 10): the control plane's and the agent's writer, each `t step key` a line — the wall-clock
 * time in ms with sub-ms precision (`performance.timeOrigin + now()`, comparable across the
 * processes of one machine), the step, and a key (a run id, or `req:<n>` before the run has
 * one) — appended to its file every 200 ms and at exit. `bench/src/replicas-bench.ts`
 * (`BENCH_TRACE=1`) reads the files back.
 */
export interface TraceWriter {
  /** Whether a file was given: every call below returns at once when not. */
  readonly tracing: boolean;
  /** Records `step` for `key` (or for each of `keys`) now. */
  readonly mark: (step: string, key: string | readonly string[]) => void;
  /** Records `step` for `key` at `t` (ms since the epoch: another process's clock, as Postgres' `clock_timestamp()`). */
  readonly at: (step: string, key: string, t: number) => void;
}

/**
 * The trace writer of a file (`undefined` or `''`: none, and the writer does nothing). Made once
 * per process and file: it writes out at the process's exit.
 *
 * @example
 * const { tracing, mark } = traceWriter(process.env.RUNT_TRACE_FILE);
 * if (tracing) mark('insert.returned', run.id);
 */
export function traceWriter(file: string | undefined): TraceWriter {
  if (file === undefined || file === '') return { tracing: false, mark: () => {}, at: () => {} };
  let lines: string[] = [];
  let timer: NodeJS.Timeout | undefined;
  const flush = (): void => {
    timer = undefined;
    if (lines.length === 0) return;
    const text = lines.join('');
    lines = [];
    appendFileSync(file, text);
  };
  process.once('exit', flush);
  const push = (line: string): void => {
    lines.push(line);
    timer ??= setTimeout(flush, 200).unref();
  };
  return {
    tracing: true,
    mark(step, key) {
      const t = (performance.timeOrigin + performance.now()).toFixed(3);
      if (typeof key === 'string') push(`${t} ${step} ${key}\n`);
      else for (const k of key) push(`${t} ${step} ${k}\n`);
    },
    at(step, key, t) {
      push(`${t.toFixed(3)} ${step} ${key}\n`);
    },
  };
}
