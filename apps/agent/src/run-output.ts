import type { LogStream, Runtime } from '@runt/runtime-spi';

export interface RunOutputOptions {
  runtime: Runtime;
  instanceId: string;
  /** Ends the follow. */
  signal: AbortSignal;
  /** Characters of each stream already sent before a restart: skipped, not sent twice. */
  skip: { stdout: number; stderr: number };
  /** `ready_when.log_line`: `onReady` is called once a line containing it appears. */
  readyLine?: string | undefined;
  /** Whether the run already reported `running` (then no line is looked for). */
  ready: () => boolean;
  /** `bytes`: exactly what the workload wrote, when the runtime reads bytes (absent after a partial skip). */
  onChunk: (stream: LogStream, data: string, bytes?: Uint8Array) => void;
  onReady: () => void;
  /** Reading failed before `signal` aborted. */
  onError: (error: unknown) => void;
}

/** Longest unterminated line kept while looking for the ready line. */
const MAX_PARTIAL_LINE = 8192;

/**
 * Follows a workload's output until it ends or `signal` aborts: skips what was already sent,
 * hands every chunk to `onChunk`, and calls `onReady` when `readyLine` first shows up in a line
 * (complete or still partial) of either stream. Never rejects.
 *
 * @example
 * await followRunOutput({ runtime, instanceId, signal, skip: { stdout: 0, stderr: 0 }, ready: () => false, onChunk, onReady, onError });
 */
export async function followRunOutput(opts: RunOutputOptions): Promise<void> {
  const skip = { ...opts.skip };
  const partial = { stdout: '', stderr: '' };
  const { readyLine } = opts;
  try {
    for await (const chunk of opts.runtime.logs(opts.instanceId, { follow: true, signal: opts.signal })) {
      let data = chunk.data;
      let bytes = chunk.bytes;
      if (skip[chunk.stream] > 0) {
        const n = Math.min(skip[chunk.stream], data.length);
        skip[chunk.stream] -= n;
        data = data.slice(n);
        bytes = undefined;
        if (data.length === 0) continue;
      }
      opts.onChunk(chunk.stream, data, bytes);
      if (readyLine && !opts.ready()) {
        const lines = (partial[chunk.stream] + data).split('\n');
        partial[chunk.stream] = (lines.pop() ?? '').slice(-MAX_PARTIAL_LINE);
        if (
          lines.some((l) => l.replace(/\r$/, '').includes(readyLine)) ||
          partial[chunk.stream].includes(readyLine)
        )
          opts.onReady();
      }
    }
  } catch (e) {
    if (!opts.signal.aborted) opts.onError(e);
  }
}
