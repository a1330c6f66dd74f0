import { execa } from 'execa';
import { abortedError } from '../abort.js';
import { RuntimeError, type RuntimeErrorCode } from '../errors.js';

export const PODMAN_RUNTIME = 'podman';

export interface PodmanResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface PodmanRunOptions {
  signal?: AbortSignal;
  /** Written to stdin, then stdin is closed. */
  input?: string;
  /** Added to podman's environment (for `--env NAME`, whose value podman takes from it). */
  env?: Record<string, string>;
}

/** What a failed podman command means, read from its `Error: …` line. */
export interface PodmanFailure {
  what: string;
  /** Code when podman says the container/object does not exist (default instance-not-found). */
  notFound?: RuntimeErrorCode;
  /** Code for any other failure (default internal). */
  fallback?: RuntimeErrorCode;
}

const NOT_FOUND =
  /no such (container|object|exec session)|no container with (name or id|id)|not known|image not known|does not exist/i;
const NAME_IN_USE = /name .* is already in use|already in use/i;

/**
 * Runs the podman CLI: argv only (no shell), output collected, never throws for a non-zero exit
 * (see {@link PodmanCli.expect}). A podman binary that cannot be started is `runtime-unavailable`,
 * naming the path; an aborted signal kills the command and rejects with `aborted`.
 * @example
 * const cli = new PodmanCli('podman');
 * const { stdout } = await cli.expect(['version', '--format', 'json'], { what: 'podman version' });
 */
export class PodmanCli {
  constructor(readonly path: string) {}

  async run(args: string[], opts: PodmanRunOptions = {}): Promise<PodmanResult> {
    const result = await execa(this.path, args, {
      reject: false,
      stripFinalNewline: false,
      ...(opts.signal ? { cancelSignal: opts.signal } : {}),
      ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' }),
      ...(opts.env ? { env: opts.env } : {}),
    });
    if (result.isCanceled || opts.signal?.aborted) throw abortedError(opts.signal, PODMAN_RUNTIME);
    if (result.exitCode === undefined)
      throw this.unavailable(result.code ?? result.shortMessage ?? 'could not run', result);
    return { stdout: String(result.stdout), stderr: String(result.stderr), exitCode: result.exitCode };
  }

  /** Runs and returns the output, or throws the RuntimeError the failure means. */
  async expect(args: string[], failure: PodmanFailure, opts: PodmanRunOptions = {}): Promise<PodmanResult> {
    const result = await this.run(args, opts);
    if (result.exitCode !== 0) throw podmanError(result, failure);
    return result;
  }

  /** Runs a `--format json` command and parses its output. */
  async json<T>(args: string[], failure: PodmanFailure, opts: PodmanRunOptions = {}): Promise<T> {
    const { stdout } = await this.expect(args, failure, opts);
    try {
      return JSON.parse(stdout) as T;
    } catch (e) {
      throw new RuntimeError('internal', `${failure.what}: podman printed no JSON: ${stdout.slice(0, 200)}`, {
        runtime: PODMAN_RUNTIME,
        cause: e,
      });
    }
  }

  /** The error for a podman binary that cannot be run. */
  unavailable(reason: string, cause?: unknown): RuntimeError {
    return new RuntimeError('runtime-unavailable', `podman binary ${this.path}: ${reason}`, {
      runtime: PODMAN_RUNTIME,
      cause,
    });
  }
}

/**
 * The `Error: …` line of podman's stderr, else its last non-empty line.
 * @example
 * podmanMessage('Error: no such container x\n') // 'no such container x'
 */
export function podmanMessage(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const error = lines.find((l) => l.startsWith('Error:'));
  return (error ?? lines.at(-1) ?? 'podman failed without a message').replace(/^Error:\s*/, '');
}

/**
 * Classifies a failed podman command: "no such container" → `notFound`, "name already in use" →
 * instance-exists, anything else → `fallback`.
 * @example
 * throw podmanError(result, { what: `start ${id}`, fallback: 'start-failed' });
 */
export function podmanError(result: PodmanResult, failure: PodmanFailure): RuntimeError {
  const message = podmanMessage(result.stderr);
  const full = `${failure.what}: ${message}`;
  const runtime = PODMAN_RUNTIME;
  if (NAME_IN_USE.test(message)) return new RuntimeError('instance-exists', full, { runtime });
  if (NOT_FOUND.test(message))
    return new RuntimeError(failure.notFound ?? 'instance-not-found', full, { runtime });
  return new RuntimeError(failure.fallback ?? 'internal', full, { runtime });
}
