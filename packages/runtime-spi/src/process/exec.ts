import { StringDecoder } from 'node:string_decoder';
import { execa } from 'execa';
import { abortedError } from '../abort.js';
import { AsyncQueue } from '../async-queue.js';
import { RuntimeError } from '../errors.js';
import type { ExecHandle, LogChunk, LogStream } from '../runtime.js';
import { signalName, signalNumber } from './signals.js';

/** Runs one command beside the instance (its cwd and env) with output streamed as it comes. */
export function execInInstance(
  command: string[],
  opts: { cwd: string; env: Record<string, string>; stdin?: string; signal?: AbortSignal; runtime: string },
): ExecHandle {
  const [file, ...args] = command as [string, ...string[]];
  const output = new AsyncQueue<LogChunk>();
  const child = execa(file, args, {
    cwd: opts.cwd,
    env: opts.env,
    extendEnv: false,
    ...(opts.stdin === undefined ? { stdin: 'ignore' as const } : { input: opts.stdin }),
    buffer: false,
    reject: false,
    ...(opts.signal ? { cancelSignal: opts.signal } : {}),
    forceKillAfterDelay: 2000,
  });
  const pipe = (stream: LogStream, source: NodeJS.ReadableStream | null) => {
    const decoder = new StringDecoder('utf8');
    source?.on('data', (data: Buffer) => {
      const text = decoder.write(data);
      if (text) output.push({ stream, data: text, at: new Date().toISOString() });
    });
  };
  pipe('stdout', child.stdout);
  pipe('stderr', child.stderr);
  const exit = child.then((result) => {
    output.end();
    if (result.isCanceled) throw abortedError(opts.signal, opts.runtime);
    if (result.exitCode === undefined && !result.signal) {
      throw new RuntimeError('exec-failed', `could not run ${file}: ${result.shortMessage}`, {
        runtime: opts.runtime,
        cause: result,
      });
    }
    return result.signal
      ? { exitCode: result.exitCode ?? 128 + signalNumber(result.signal), signal: signalName(result.signal) }
      : { exitCode: result.exitCode ?? 0 };
  });
  exit.catch(() => {});
  return { output, exit };
}
