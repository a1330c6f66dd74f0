import { throwIfAborted } from '../abort.js';
import type { LogChunk, LogsOptions } from '../runtime.js';
import { PODMAN_RUNTIME, podmanError, type PodmanCli } from './cli.js';
import { streamPodman } from './stream.js';

/**
 * A container's output through `podman logs` (stdout and stderr stay apart). With `follow` it
 * reads until the container exits; when the signal aborts, iteration rejects with `aborted`.
 * `mustExist` runs first so a missing container is `instance-not-found`, not log text.
 * @example
 * for await (const c of podmanLogs(cli, id, { follow: true }, check)) process.stdout.write(c.data);
 */
export async function* podmanLogs(
  cli: PodmanCli,
  id: string,
  opts: LogsOptions,
  mustExist: (id: string, signal?: AbortSignal) => Promise<unknown>,
): AsyncGenerator<LogChunk> {
  throwIfAborted(opts.signal, PODMAN_RUNTIME);
  await mustExist(id, opts.signal);
  const args = ['logs'];
  if (opts.follow) args.push('--follow');
  if (opts.since !== undefined) args.push('--since', new Date(opts.since).toISOString());
  args.push('--', id);
  const run = streamPodman(cli, args, opts.signal ? { signal: opts.signal } : {});
  try {
    yield* run.output;
    const { exitCode, stderrTail } = await run.done;
    if (exitCode !== 0)
      throw podmanError({ exitCode, stderr: stderrTail, stdout: '' }, { what: `logs of container ${id}` });
  } finally {
    run.kill();
  }
}
