import { randomUUID } from 'node:crypto';
import { throwIfAborted } from '../abort.js';
import { RuntimeError } from '../errors.js';
import type { ExecHandle, ExecOptions, ExitStatus } from '../runtime.js';
import { PODMAN_RUNTIME, podmanMessage, type PodmanCli } from './cli.js';
import { EXEC_MARKER_ENV, hangUpMarked } from './hang-up.js';
import { streamPodman } from './stream.js';

/** podman's own "could not run the exec" exit code (the command's codes pass through). */
const PODMAN_ERROR_EXIT = 125;

/**
 * `--env K=V` flags for podman.
 * @example
 * envFlags({ A: '1' }) // ['--env', 'A=1']
 */
export function envFlags(env: Record<string, string> | undefined): string[] {
  return Object.entries(env ?? {}).flatMap(([k, v]) => ['--env', `${k}=${v}`]);
}

/**
 * Runs `command` in a running container with `podman exec`: output streams as it comes, stdin
 * (when given) is written and closed, `exit` settles with the command's exit code. The caller
 * checks the container is running first (missing → instance-not-found, stopped → exec-failed).
 * @example
 * const h = await podmanExec(cli, id, ['sh', '-c', 'cat'], { stdin: 'hi' });
 * console.log((await h.exit).exitCode);
 */
export async function podmanExec(
  cli: PodmanCli,
  id: string,
  command: string[],
  opts: ExecOptions = {},
): Promise<ExecHandle> {
  throwIfAborted(opts.signal, PODMAN_RUNTIME);
  if (command.length === 0)
    throw new RuntimeError('invalid-spec', 'exec needs a command', { runtime: PODMAN_RUNTIME });
  const args = ['exec'];
  if (opts.stdin !== undefined) args.push('--interactive');
  // Killing the podman client leaves the program running; the marker lets an abort find it.
  const marker = randomUUID();
  args.push(...envFlags({ ...(opts.env ?? {}), [EXEC_MARKER_ENV]: marker }));
  if (opts.workdir) args.push('--workdir', opts.workdir);
  args.push('--', id, ...command);
  const run = streamPodman(cli, args, {
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.stdin !== undefined ? { input: opts.stdin } : {}),
  });
  const onAbort = () => void hangUpMarked(EXEC_MARKER_ENV, marker, ['SIGKILL']);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  void run.done.catch(() => {}).finally(() => opts.signal?.removeEventListener('abort', onAbort));
  const exit: Promise<ExitStatus> = run.done.then(({ exitCode, stderrTail }) => {
    if (exitCode === PODMAN_ERROR_EXIT && /^Error: /m.test(stderrTail)) {
      throw new RuntimeError(
        'exec-failed',
        `exec ${JSON.stringify(command)} in container ${id}: ${podmanMessage(stderrTail)}`,
        {
          runtime: PODMAN_RUNTIME,
        },
      );
    }
    return { exitCode };
  });
  exit.catch(() => {});
  return { output: run.output, exit };
}
