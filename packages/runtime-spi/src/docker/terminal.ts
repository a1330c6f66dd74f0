import type Docker from 'dockerode';
import { StringDecoder } from 'node:string_decoder';
import { throwIfAborted } from '../abort.js';
import type { ExitStatus, TerminalOptions, TerminalSession } from '../runtime.js';
import { DOCKER_RUNTIME, toDockerError, type DockerEndpoint } from './connection.js';
import { DEFAULT_SHELL, envList } from './conventions.js';
import { createDockerExec, execExitStatus, signalExec } from './exec.js';

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
  // A resize is an HTTP call; keystrokes sent after it must not overtake it, so while one is in
  // flight later writes (and resizes) queue behind it, in the order the caller made them.
  let queue: Promise<void> | undefined;
  const enqueue = (step: () => Promise<void> | void) => {
    const mine = (queue ?? Promise.resolve()).then(step).catch(() => {});
    queue = mine;
    void mine.then(() => {
      if (queue === mine) queue = undefined;
    });
  };
  const resize = (cols: number, rows: number) => {
    if (closed) return;
    // The program may have just exited; a late resize is harmless, so its failure is ignored.
    enqueue(() => exec.resize({ w: cols, h: rows }));
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
      if (closed) return;
      if (queue) {
        enqueue(() => {
          if (!closed) stream.write(data);
        });
      } else {
        stream.write(data);
      }
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
      void signalExec(exec, endpoint, ['SIGHUP', 'SIGKILL']);
    },
  };
  return session;
}
