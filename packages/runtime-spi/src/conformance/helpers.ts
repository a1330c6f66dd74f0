import { isRuntimeError, type RuntimeErrorCode } from '../errors.js';
import type { ExecHandle, LogChunk, LogsOptions, Runtime, TerminalSession } from '../runtime.js';

export interface CollectedOutput {
  stdout: string;
  stderr: string;
  chunks: LogChunk[];
}

/**
 * Reads an instance's logs (or an exec's output) to the end and joins them per stream.
 * @example
 * const { stdout } = await collectLogs(runtime.logs(id));
 */
export async function collectLogs(source: AsyncIterable<LogChunk>): Promise<CollectedOutput> {
  const chunks: LogChunk[] = [];
  for await (const chunk of source) chunks.push(chunk);
  return {
    stdout: chunks
      .filter((c) => c.stream === 'stdout')
      .map((c) => c.data)
      .join(''),
    stderr: chunks
      .filter((c) => c.stream === 'stderr')
      .map((c) => c.data)
      .join(''),
    chunks,
  };
}

/** Output and exit status of an exec, once it has ended. */
export async function collectExec(handle: ExecHandle): Promise<CollectedOutput & { exitCode: number }> {
  const [output, status] = await Promise.all([collectLogs(handle.output), handle.exit]);
  return { ...output, exitCode: status.exitCode };
}

/**
 * Follows an instance's logs until `text` has appeared on either stream (then stops following).
 * Rejects if the logs end first.
 */
export async function waitForLogText(
  runtime: Runtime,
  id: string,
  text: string,
  opts: Omit<LogsOptions, 'follow'> = {},
): Promise<string> {
  let seen = '';
  for await (const chunk of runtime.logs(id, { ...opts, follow: true })) {
    seen += chunk.data;
    if (seen.includes(text)) return seen;
  }
  throw new Error(`logs of ${id} ended without "${text}"; got: ${JSON.stringify(seen)}`);
}

/**
 * Collects a terminal's output until it contains `text`; fails after `timeoutMs` (default
 * 20 s) with what the terminal showed, so a lost keystroke reads as a clear failure.
 */
export function waitForTerminalText(
  session: TerminalSession,
  text: string,
  sink: { output: string },
  timeoutMs = 20_000,
): Promise<void> {
  return new Promise((resolve, reject) => {
    if (sink.output.includes(text)) return resolve();
    const timer = setTimeout(() => {
      off();
      reject(
        new Error(
          `terminal never showed ${JSON.stringify(text)}; it showed: ${JSON.stringify(sink.output.slice(-500))}`,
        ),
      );
    }, timeoutMs);
    const off = session.onData(() => {
      if (sink.output.includes(text)) {
        clearTimeout(timer);
        off();
        resolve();
      }
    });
  });
}

/**
 * Settles with the RuntimeError `promise` rejects with, failing when it resolves or rejects
 * with anything but a RuntimeError carrying `code`.
 */
export async function expectRuntimeError(
  promise: Promise<unknown>,
  code: RuntimeErrorCode,
): Promise<unknown> {
  let outcome: { value: unknown } | { error: unknown };
  try {
    outcome = { value: await promise };
  } catch (error) {
    outcome = { error };
  }
  if ('value' in outcome)
    throw new Error(
      `expected a RuntimeError "${code}", but the call resolved with ${safeJson(outcome.value)}`,
    );
  if (!isRuntimeError(outcome.error, code)) {
    const e = outcome.error as { code?: unknown; message?: unknown };
    throw new Error(
      `expected a RuntimeError "${code}", got ${typeof e?.code === 'string' ? e.code : ''} ${typeof e?.message === 'string' ? e.message : String(outcome.error)}`,
    );
  }
  return outcome.error;
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
