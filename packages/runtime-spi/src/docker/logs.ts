import type Docker from 'dockerode';
import { abortedError, throwIfAborted } from '../abort.js';
import { AsyncQueue } from '../async-queue.js';
import type { LogChunk, LogsOptions } from '../runtime.js';
import { DOCKER_RUNTIME, toDockerError, type DockerEndpoint } from './connection.js';
import { sinceSeconds } from './conventions.js';
import { DockerDemuxer } from './demux.js';

/**
 * A container's output as chunks per stream. With `follow` it keeps reading until the container
 * exits (the engine then ends the stream); when the signal aborts, iteration rejects with `aborted`.
 * @example
 * for await (const c of dockerLogs(docker, endpoint, id, { follow: true })) process.stdout.write(c.data);
 */
export async function* dockerLogs(
  docker: Docker,
  endpoint: DockerEndpoint,
  id: string,
  opts: LogsOptions = {},
): AsyncGenerator<LogChunk> {
  throwIfAborted(opts.signal, DOCKER_RUNTIME);
  const container = docker.getContainer(id);
  const since = sinceSeconds(opts.since);
  const base = { stdout: true, stderr: true, ...(since !== undefined ? { since } : {}) };
  const queue = new AsyncQueue<LogChunk>();
  const demux = new DockerDemuxer((stream, data) =>
    queue.push({ stream, data, at: new Date().toISOString() }),
  );
  const fail = (e: unknown) => toDockerError(e, endpoint, { what: `logs of container ${id}` });

  if (!opts.follow) {
    const all = await container
      .logs({ ...base, follow: false })
      .catch((e: unknown) => Promise.reject(fail(e)));
    demux.push(Buffer.isBuffer(all) ? all : Buffer.from(String(all)));
    demux.end();
    queue.end();
    yield* queue;
    return;
  }

  const stream = (await container
    .logs({ ...base, follow: true, abortSignal: opts.signal })
    .catch((e: unknown) => Promise.reject(fail(e)))) as NodeJS.ReadableStream & { destroy?: () => void };
  const finish = () => {
    demux.end();
    queue.end();
  };
  stream.on('data', (b: Buffer) => demux.push(b));
  stream.on('end', finish);
  stream.on('close', finish);
  const onAbort = () => {
    queue.fail(abortedError(opts.signal, DOCKER_RUNTIME));
    stream.destroy?.();
  };
  stream.on('error', (e: unknown) => (opts.signal?.aborted ? onAbort() : queue.fail(fail(e))));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    yield* queue;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    stream.destroy?.();
  }
}
