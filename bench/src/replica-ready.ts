import type { ChildProcess } from 'node:child_process';
import { sleep } from './stats.js';

/**
 * Keeps the last `max` characters a child writes to its stderr (the pipe is read to its end, so
 * the child never blocks on it): what a replica said before it exited.
 */
export function stderrTail(proc: ChildProcess, max = 2000): () => string {
  let tail = '';
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (s: string) => {
    tail = (tail + s).slice(-max);
  });
  return () => tail.trim();
}

/**
 * Ends child processes this bench started: SIGTERM to each still running, then waits until
 * every one has exited.
 *
 * @example
 * await stopProcesses([a.proc, b.proc]);
 */
export async function stopProcesses(procs: ChildProcess[]): Promise<void> {
  await Promise.all(
    procs.map((p) =>
      p.exitCode !== null || p.signalCode !== null
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            p.once('exit', () => resolve());
            p.kill('SIGTERM');
          }),
    ),
  );
}

/**
 * Polls `url`/readyz every 100 ms until it answers ok; rejects at once, with what the process
 * wrote to stderr, when the process exits first (a replica that cannot start — its port taken,
 * its database refused — fails the bench in 100 ms with its reason, not after the deadline).
 *
 * @example
 * await waitReady(proc, 'http://127.0.0.1:8787', 'cp1', stderrTail(proc));
 */
export async function waitReady(
  proc: ChildProcess,
  url: string,
  id: string,
  stderr: () => string,
  timeoutMs = 120_000,
): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; ; await sleep(100)) {
    if (
      await fetch(`${url}/readyz`).then(
        (x) => x.ok,
        () => false,
      )
    )
      return;
    if (proc.exitCode !== null || proc.signalCode !== null) {
      const said = stderr();
      throw new Error(
        `${id} exited (${proc.exitCode ?? proc.signalCode}) before it was ready${said ? `: ${said}` : ''}`,
      );
    }
    if (Date.now() > deadline) throw new Error(`${id} did not become ready`);
  }
}
