import type Docker from 'dockerode';
import type { Duplex } from 'node:stream';
import { abortedError, sleep, throwIfAborted } from '../abort.js';
import { AsyncQueue } from '../async-queue.js';
import { RuntimeError } from '../errors.js';
import type { ExecHandle, ExecOptions, ExitStatus, LogChunk } from '../runtime.js';
import { DOCKER_RUNTIME, toDockerError, type DockerEndpoint } from './connection.js';
import { envList } from './conventions.js';
import { DockerDemuxer } from './demux.js';

/**
 * Creates a Docker exec in a running container and attaches to it (hijacked connection).
 * 404 → instance-not-found; a container that is not running (409) → exec-failed.
 * @example
 * const exec = await createDockerExec(docker, endpoint, id, { Cmd: ['sh'], AttachStdin: true });
 */
export async function createDockerExec(
  docker: Docker,
  endpoint: DockerEndpoint,
  id: string,
  options: Docker.ExecCreateOptions,
  start: Docker.ExecStartOptions,
): Promise<{ exec: Docker.Exec; stream: Duplex }> {
  const what = `exec ${JSON.stringify(options.Cmd)} in container ${id}`;
  try {
    const exec = await docker.getContainer(id).exec(options);
    const stream = await exec.start({ hijack: true, ...start });
    return { exec, stream };
  } catch (e) {
    throw toDockerError(e, endpoint, {
      what,
      notFound: 'instance-not-found',
      conflict: 'exec-failed',
      fallback: 'exec-failed',
    });
  }
}

/**
 * The exit code of an exec whose stream has ended. The engine may still report it as running
 * for a moment after the stream closes, so this polls briefly.
 * @example
 * const { exitCode } = await execExitStatus(exec, endpoint);
 */
export async function execExitStatus(exec: Docker.Exec, endpoint: DockerEndpoint): Promise<ExitStatus> {
  for (let attempt = 0; ; attempt++) {
    let info: Docker.ExecInspectInfo;
    try {
      info = await exec.inspect();
    } catch (e) {
      throw toDockerError(e, endpoint, { what: `exec ${exec.id}`, notFound: 'instance-not-found' });
    }
    if (!info.Running && typeof info.ExitCode === 'number') return { exitCode: info.ExitCode };
    if (attempt > 200)
      throw new RuntimeError('internal', `exec ${exec.id} never reported an exit code`, {
        runtime: DOCKER_RUNTIME,
      });
    await sleep(Math.min(5 * (attempt + 1), 50));
  }
}

/**
 * Runs `command` in a running container: output streams as it comes (stdout and stderr kept
 * apart), `stdin` is written then closed, `exit` settles with the exit code.
 * @example
 * const h = await dockerExec(docker, endpoint, id, ['sh', '-c', 'cat'], { stdin: 'hi' });
 * for await (const c of h.output) console.log(c.stream, c.data);
 * console.log((await h.exit).exitCode);
 */
export async function dockerExec(
  docker: Docker,
  endpoint: DockerEndpoint,
  id: string,
  command: string[],
  opts: ExecOptions = {},
): Promise<ExecHandle> {
  throwIfAborted(opts.signal, DOCKER_RUNTIME);
  if (command.length === 0)
    throw new RuntimeError('invalid-spec', 'exec needs a command', { runtime: DOCKER_RUNTIME });
  const withStdin = opts.stdin !== undefined;
  const { exec, stream } = await createDockerExec(
    docker,
    endpoint,
    id,
    {
      Cmd: command,
      AttachStdout: true,
      AttachStderr: true,
      AttachStdin: withStdin,
      Tty: false,
      Env: envList(opts.env),
      ...(opts.workdir ? { WorkingDir: opts.workdir } : {}),
    },
    { stdin: withStdin },
  );
  const output = new AsyncQueue<LogChunk>();
  const demux = new DockerDemuxer((s, data) =>
    output.push({ stream: s, data, at: new Date().toISOString() }),
  );
  const ended = new Promise<void>((resolve, reject) => {
    stream.on('data', (b: Buffer) => demux.push(b));
    stream.once('end', resolve);
    stream.once('close', resolve);
    stream.once('error', reject);
  }).finally(() => {
    demux.end();
    output.end();
  });
  if (withStdin) stream.end(opts.stdin);
  const onAbort = () => {
    stream.destroy();
    void signalExec(exec, endpoint, ['SIGKILL']);
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const exit = ended
    .then(() => {
      if (opts.signal?.aborted) throw abortedError(opts.signal, DOCKER_RUNTIME);
      return execExitStatus(exec, endpoint);
    })
    .catch((e: unknown) => {
      if (opts.signal?.aborted) throw abortedError(opts.signal, DOCKER_RUNTIME);
      throw toDockerError(e, endpoint, { what: `exec in container ${id}`, fallback: 'exec-failed' });
    })
    .finally(() => opts.signal?.removeEventListener('abort', onAbort));
  exit.catch(() => {});
  return { output, exit };
}

/**
 * Signals an exec's program. The Docker API cannot signal an exec, and a program whose client
 * went away keeps running, so when the engine is local (a unix socket on this host) this sends
 * each signal in turn to the exec's host pid, 500 ms apart, stopping once it has exited.
 * @example
 * await signalExec(exec, endpoint, ['SIGHUP', 'SIGKILL']);
 */
export async function signalExec(
  exec: Docker.Exec,
  endpoint: DockerEndpoint,
  signals: NodeJS.Signals[],
): Promise<void> {
  if (!endpoint.options.socketPath) return;
  for (const [n, signal] of signals.entries()) {
    if (n > 0) await sleep(500);
    // Right after start the engine may not report the pid yet.
    let info: Docker.ExecInspectInfo | undefined;
    for (let i = 0; i < 40; i++) {
      info = await exec.inspect().catch(() => undefined);
      if (!info || (!info.Running && typeof info.ExitCode === 'number')) return;
      if (info.Running && info.Pid) break;
      await sleep(50);
    }
    if (!info?.Pid) return;
    try {
      process.kill(info.Pid, signal);
    } catch {
      return; // gone already, or not ours to signal
    }
  }
}
