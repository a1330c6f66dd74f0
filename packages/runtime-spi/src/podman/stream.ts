import { execa } from 'execa';
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';
import { abortedError } from '../abort.js';
import { AsyncQueue } from '../async-queue.js';
import type { LogChunk, LogStream } from '../runtime.js';
import { PODMAN_RUNTIME, type PodmanCli } from './cli.js';

export interface PodmanStream {
  /** The command's stdout and stderr as chunks, ending when it exits. */
  output: AsyncQueue<LogChunk>;
  /** Exit code and the last stderr text (for podman's own `Error:` line); rejects `aborted` on abort. */
  done: Promise<{ exitCode: number; stderrTail: string }>;
  /** Kills the command (for a consumer that stops reading early). */
  kill(): void;
}

const TAIL = 4096;

/**
 * Runs a long podman command (`logs -f`, `exec`) and streams its output as {@link LogChunk}s,
 * keeping stdout and stderr apart. Aborting the signal kills the command.
 * @example
 * const { output, done } = streamPodman(cli, ['logs', '--follow', id]);
 * for await (const c of output) console.log(c.stream, c.data);
 */
export function streamPodman(
  cli: PodmanCli,
  args: string[],
  opts: { signal?: AbortSignal; input?: string } = {},
): PodmanStream {
  const output = new AsyncQueue<LogChunk>();
  const child = execa(cli.path, args, {
    reject: false,
    buffer: false,
    ...(opts.signal ? { cancelSignal: opts.signal } : {}),
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' }),
  });
  let stderrTail = '';
  const pipe = (stream: LogStream, source: Readable | null) => {
    const decoder = new StringDecoder('utf8');
    const push = (data: string) => {
      if (!data) return;
      if (stream === 'stderr') stderrTail = (stderrTail + data).slice(-TAIL);
      output.push({ stream, data, at: new Date().toISOString() });
    };
    source?.on('data', (b: Buffer) => push(decoder.write(b)));
    source?.on('end', () => push(decoder.end()));
  };
  pipe('stdout', child.stdout);
  pipe('stderr', child.stderr);
  const done = child.then((result) => {
    if (result.isCanceled || opts.signal?.aborted) {
      const error = abortedError(opts.signal, PODMAN_RUNTIME);
      output.fail(error);
      throw error;
    }
    if (result.exitCode === undefined) {
      const error = cli.unavailable(result.code ?? result.shortMessage ?? 'could not run', result);
      output.fail(error);
      throw error;
    }
    output.end();
    return { exitCode: result.exitCode, stderrTail };
  });
  done.catch(() => {});
  return { output, done, kill: () => void child.kill() };
}
