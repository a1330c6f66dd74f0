import type Docker from 'dockerode';
import { StringDecoder } from 'node:string_decoder';
import { sleep, throwIfAborted } from '../abort.js';
import type { ExitStatus, TerminalOptions, TerminalSession } from '../runtime.js';
import { DOCKER_RUNTIME, toDockerError, type DockerEndpoint } from './connection.js';
import { DEFAULT_SHELL, envList } from './conventions.js';
import { createDockerExec, execExitStatus } from './exec.js';

/**
 * An interactive terminal in a running container: a Docker exec with a TTY, attached over a
 * hijacked connection; resize goes through the exec resize endpoint. `close()` hangs up the
 * connection, which ends the program with SIGHUP.
 * @example
 * const t = await dockerTerminal(docker, endpoint, id, { cols: 100, rows: 30 });
 * t.onData((s) => process.stdout.write(s));
 * t.write('echo hi; exit\n');
 * await t.exit;
 */
export async function dockerTerminal(
  docker: Docker,
  endpoint: DockerEndpoint,
  id: string,
  opts: TerminalOptions = {},
): Promise<TerminalSession> {
  throwIfAborted(opts.signal, DOCKER_RUNTIME);
  const { exec, stream } = await createDockerExec(
    docker,
    endpoint,
    id,
    {
      Cmd: opts.command?.length ? opts.command : DEFAULT_SHELL,
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      Tty: true,
      Env: envList({ TERM: 'xterm-256color', ...(opts.env ?? {}) }),
    },
    { stdin: true, Tty: true },
  );
  const listeners = new Set<(data: string) => void>();
  const decoder = new StringDecoder('utf8');
  const backlog: string[] = [];
  const deliver = (text: string) => {
    if (!text) return;
    if (listeners.size === 0) backlog.push(text);
    for (const l of listeners) l(text);
  };
  stream.on('data', (b: Buffer) => deliver(decoder.write(b)));
  const ended = new Promise<void>((resolve) => {
    stream.once('end', resolve);
    stream.once('close', resolve);
    stream.once('error', () => resolve());
  });
  const exit: Promise<ExitStatus> = ended.then(() => {
    deliver(decoder.end());
    return execExitStatus(exec, endpoint);
  });
  exit.catch(() => {});
  let closed = false;
  const resize = (cols: number, rows: number) => {
    if (closed) return;
    exec.resize({ w: cols, h: rows }).catch(() => {
      // The program may have just exited; a late resize is harmless.
    });
  };
  if (opts.cols && opts.rows) {
    try {
      await exec.resize({ w: opts.cols, h: opts.rows });
    } catch (e) {
      stream.destroy();
      throw toDockerError(e, endpoint, { what: `terminal in container ${id}`, fallback: 'exec-failed' });
    }
  }
  const onAbort = () => session.close();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  void ended.then(() => opts.signal?.removeEventListener('abort', onAbort));
  const session: TerminalSession = {
    write: (data) => {
      if (!closed) stream.write(data);
    },
    resize,
    onData: (listener) => {
      listeners.add(listener);
      for (const text of backlog.splice(0)) listener(text);
      return () => listeners.delete(listener);
    },
    exit,
    close: () => {
      if (closed) return;
      closed = true;
      stream.end();
      stream.destroy();
      void hangUp(exec, endpoint);
    },
  };
  return session;
}

/**
 * Ends a terminal's program after its connection is gone. The Docker API has no way to signal an
 * exec, and a detached TTY keeps a program such as `sleep` alive, so when the engine is local
 * (a unix socket, same host) this sends SIGHUP to the exec's host pid, then SIGKILL.
 */
async function hangUp(exec: Docker.Exec, endpoint: DockerEndpoint): Promise<void> {
  if (!endpoint.options.socketPath) return;
  for (const signal of ['SIGHUP', 'SIGKILL'] as const) {
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
    await sleep(500);
  }
}
