import { Socket } from 'node:net';
import { AgentError } from './agent-error.js';

/** The environment variable naming the descriptor `runt workstation run` passes the token on. */
export const TOKEN_FD_ENV = 'RUNT_CLOUD_TOKEN_FD';

export interface TokenHandover {
  /** The workstation token, or undefined when neither the descriptor nor RUNT_CLOUD_TOKEN gave one. */
  token: string | undefined;
  /** True when the token came over a descriptor that also tells when the parent dies. */
  fromParent: boolean;
}

/**
 * Takes the workstation token out of this process's environment, so nothing this agent starts
 * can inherit it. `runt workstation run` passes it on a pipe (`RUNT_CLOUD_TOKEN_FD`, one line)
 * and keeps the pipe open: when the pipe ends, the parent is gone (even after `kill -9`) and
 * `onParentGone` is called, once. A user who sets `RUNT_CLOUD_TOKEN` themselves keeps that path; it
 * is deleted from `process.env` once read (Linux still shows a process's *initial* environment
 * in /proc/<pid>/environ to the same user: the pipe is the path that leaves nothing there).
 *
 * @example
 * const { token } = await takeToken(process.env, () => process.kill(process.pid, 'SIGTERM'));
 */
export async function takeToken(env: NodeJS.ProcessEnv, onParentGone: () => void): Promise<TokenHandover> {
  const fdText = env[TOKEN_FD_ENV];
  const fromEnv = env.RUNT_CLOUD_TOKEN?.trim() || undefined;
  delete env.RUNT_CLOUD_TOKEN;
  delete env[TOKEN_FD_ENV];
  if (fdText === undefined) return { token: fromEnv, fromParent: false };
  const fd = Number(fdText);
  if (!Number.isInteger(fd) || fd < 3)
    throw new AgentError('config-invalid', `${TOKEN_FD_ENV} must name a descriptor ≥ 3`);
  const pipe = new Socket({ fd, readable: true, writable: false });
  const token = await new Promise<string>((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer) => {
      text += String(chunk);
      const end = text.indexOf('\n');
      if (end < 0) return;
      pipe.off('data', onData);
      resolve(text.slice(0, end).trim());
    };
    pipe.on('data', onData);
    pipe.once('error', (e) =>
      reject(new AgentError('config-invalid', `cannot read the token from descriptor ${fd}: ${e.message}`)),
    );
    pipe.once('end', () =>
      reject(new AgentError('config-invalid', `descriptor ${fd} ended before the token`)),
    );
  });
  pipe.removeAllListeners('end');
  pipe.removeAllListeners('error');
  // One parent death is one call: a pipe that ends also closes (and may error), and a second
  // SIGTERM would be "stop the runs now", skipping the shutdown grace (docs/agent.md).
  let gone = false;
  const parentGone = () => {
    if (gone) return;
    gone = true;
    onParentGone();
  };
  pipe.on('error', parentGone);
  pipe.once('end', parentGone);
  pipe.once('close', parentGone);
  pipe.resume();
  pipe.unref(); // watching the parent never keeps the agent alive by itself
  return { token: token || fromEnv, fromParent: true };
}
