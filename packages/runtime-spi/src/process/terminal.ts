import type { ExitStatus, TerminalSession } from '../runtime.js';
import { signalName } from './signals.js';

/**
 * A real PTY (@lydell/node-pty) running `command` in the instance's cwd and env. The native
 * module loads on first use, so embedders that never open a terminal never load it.
 */
export async function openTerminal(opts: {
  command: string[];
  cwd: string;
  env: Record<string, string>;
  cols: number;
  rows: number;
}): Promise<TerminalSession> {
  const pty = await import('@lydell/node-pty');
  const [file, ...args] = opts.command as [string, ...string[]];
  const term = pty.spawn(file, args, {
    name: opts.env.TERM ?? 'xterm-256color',
    cols: opts.cols,
    rows: opts.rows,
    cwd: opts.cwd,
    env: opts.env,
  });
  let exited = false;
  const exit = new Promise<ExitStatus>((resolve) => {
    term.onExit(({ exitCode, signal }) => {
      exited = true;
      const name = signalName(signal);
      resolve(name ? { exitCode: exitCode || 128 + (signal ?? 0), signal: name } : { exitCode });
    });
  });
  return {
    write: (data) => {
      if (!exited) term.write(data);
    },
    resize: (cols, rows) => {
      if (!exited) term.resize(cols, rows);
    },
    onData(listener) {
      const subscription = term.onData(listener);
      return () => subscription.dispose();
    },
    exit,
    close() {
      if (!exited) term.kill();
    },
  };
}
