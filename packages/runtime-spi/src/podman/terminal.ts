import { spawn } from '@lydell/node-pty';
import { randomUUID } from 'node:crypto';
import { throwIfAborted } from '../abort.js';
import { RuntimeError } from '../errors.js';
import type { ExitStatus, TerminalOptions, TerminalSession } from '../runtime.js';
import { DEFAULT_SHELL } from '../docker/conventions.js';
import { PODMAN_RUNTIME, type PodmanCli } from './cli.js';
import { envFlags } from './exec.js';
import { hangUpMarked, TERMINAL_MARKER_ENV } from './hang-up.js';

/**
 * An interactive terminal in a running container: `podman exec -it` under a local pseudo
 * terminal, so resizes reach the container as SIGWINCH through podman. `close()` hangs up
 * the pty (SIGHUP), which ends the podman client; the program itself (marked with a
 * RUNT_TERMINAL_SESSION env var) is then found on the host and sent SIGHUP, then SIGKILL.
 * @example
 * const t = podmanTerminal(cli, id, { cols: 100, rows: 30 });
 * t.onData((s) => process.stdout.write(s));
 * t.write('exit 3\r');
 * console.log(await t.exit); // { exitCode: 3 }
 */
export function podmanTerminal(cli: PodmanCli, id: string, opts: TerminalOptions = {}): TerminalSession {
  throwIfAborted(opts.signal, PODMAN_RUNTIME);
  const term = 'xterm-256color';
  const marker = randomUUID();
  const env = { TERM: term, ...(opts.env ?? {}), [TERMINAL_MARKER_ENV]: marker };
  const args = ['exec', '--interactive', '--tty', ...envFlags(env), '--', id];
  args.push(...(opts.command?.length ? opts.command : DEFAULT_SHELL));
  let pty: ReturnType<typeof spawn>;
  try {
    pty = spawn(cli.path, args, {
      name: term,
      cols: opts.cols ?? 80,
      rows: opts.rows ?? 24,
      env: process.env,
    });
  } catch (e) {
    throw cli.unavailable((e as Error).message, e);
  }
  const listeners = new Set<(data: string) => void>();
  const backlog: string[] = [];
  pty.onData((data) => {
    if (listeners.size === 0) backlog.push(data);
    for (const l of listeners) l(data);
  });
  let closed = false;
  const exit = new Promise<ExitStatus>((resolve) => {
    pty.onExit(({ exitCode }) => {
      closed = true;
      resolve({ exitCode });
    });
  });
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      pty.kill('SIGHUP');
    } catch {
      // already gone
    }
    // The program is ended from the host; if the podman client still lingers after that,
    // kill it so `exit` always settles.
    void hangUpMarked(TERMINAL_MARKER_ENV, marker).then(() => {
      const force = setTimeout(() => {
        try {
          pty.kill('SIGKILL');
        } catch {
          // already gone
        }
      }, 2_000);
      force.unref();
      void exit.then(() => clearTimeout(force));
    });
  };
  if (opts.signal) {
    opts.signal.addEventListener('abort', close, { once: true });
    void exit.then(() => opts.signal?.removeEventListener('abort', close));
  }
  return {
    write: (data) => {
      if (!closed) pty.write(data);
    },
    resize: (cols, rows) => {
      if (closed) return;
      if (!(cols > 0 && rows > 0))
        throw new RuntimeError('invalid-spec', `bad terminal size ${cols}x${rows}`, {
          runtime: PODMAN_RUNTIME,
        });
      pty.resize(cols, rows);
    },
    onData: (listener) => {
      listeners.add(listener);
      for (const text of backlog.splice(0)) listener(text);
      return () => listeners.delete(listener);
    },
    exit,
    close,
  };
}
