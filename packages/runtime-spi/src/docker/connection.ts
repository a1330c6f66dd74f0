import type Docker from 'dockerode';
import { RuntimeError, isRuntimeError, type RuntimeErrorCode } from '../errors.js';

export const DOCKER_RUNTIME = 'docker';
export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';

export interface DockerEndpoint {
  /** What error messages name: the socket path or the tcp URL. */
  label: string;
  options: Docker.DockerOptions;
}

/**
 * Where to reach the engine: an explicit socket, else a DOCKER_HOST-style `host`
 * (`unix:///path`, `tcp://h:port`), else `$DOCKER_HOST`, else /var/run/docker.sock.
 * @example
 * resolveDockerEndpoint({ host: 'unix:///run/runt-docker/docker.sock' }).label // '/run/runt-docker/docker.sock'
 */
export function resolveDockerEndpoint(opts: { socketPath?: string; host?: string } = {}): DockerEndpoint {
  if (opts.socketPath) return { label: opts.socketPath, options: { socketPath: opts.socketPath } };
  const host = opts.host ?? process.env['DOCKER_HOST'];
  if (!host) return { label: DEFAULT_DOCKER_SOCKET, options: { socketPath: DEFAULT_DOCKER_SOCKET } };
  if (host.startsWith('unix://')) {
    const socketPath = host.slice('unix://'.length);
    return { label: socketPath, options: { socketPath } };
  }
  if (host.startsWith('/')) return { label: host, options: { socketPath: host } };
  const url = new URL(host.replace(/^tcp:/, 'http:'));
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new RuntimeError('invalid-spec', `unsupported Docker host ${host} (use unix:// or tcp://)`, {
      runtime: DOCKER_RUNTIME,
    });
  }
  return {
    label: host,
    options: {
      host: url.hostname,
      port: url.port || 2375,
      protocol: url.protocol === 'https:' ? 'https' : 'http',
    },
  };
}

interface EngineError {
  statusCode?: number;
  code?: string;
  json?: unknown;
  message?: string;
}

const CONNECTION_CODES = new Set([
  'ENOENT',
  'ECONNREFUSED',
  'EACCES',
  'EPERM',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'ENOTSOCK',
]);

/**
 * The engine's own message for a failed API call ("No such container: x").
 * @example
 * engineMessage({ json: { message: 'No such container: x' } }) // 'No such container: x'
 */
export function engineMessage(e: unknown): string {
  const err = e as EngineError;
  const json = err?.json as { message?: unknown } | undefined;
  if (json && typeof json === 'object' && typeof json.message === 'string') return json.message;
  if (typeof err?.message === 'string') return err.message;
  return String(e);
}

/**
 * The HTTP status the engine answered with, if it answered.
 * @example
 * engineStatus({ statusCode: 404 }) // 404
 */
export function engineStatus(e: unknown): number | undefined {
  const status = (e as EngineError)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

/**
 * True when the error means the engine could not be reached at all.
 * @example
 * isConnectionError({ code: 'ECONNREFUSED' }) // true
 */
export function isConnectionError(e: unknown): boolean {
  const code = (e as EngineError)?.code;
  return typeof code === 'string' && CONNECTION_CODES.has(code);
}

/**
 * Turns a dockerode error into a RuntimeError: unreachable engine → runtime-unavailable (naming
 * the socket), 404 → `notFound`, 400 → `badRequest`, 409 → `conflict`, anything else → `fallback`.
 * @example
 * throw toDockerError(e, endpoint, { notFound: 'instance-not-found', what: `container ${id}` });
 */
export function toDockerError(
  e: unknown,
  endpoint: DockerEndpoint,
  ctx: {
    what: string;
    notFound?: RuntimeErrorCode;
    conflict?: RuntimeErrorCode;
    badRequest?: RuntimeErrorCode;
    fallback?: RuntimeErrorCode;
  },
): RuntimeError {
  if (isRuntimeError(e)) return e;
  const runtime = DOCKER_RUNTIME;
  if (isConnectionError(e)) {
    const code = (e as EngineError).code;
    return new RuntimeError(
      'runtime-unavailable',
      `Docker socket ${endpoint.label}: ${code} (${engineMessage(e)})`,
      { runtime, cause: e },
    );
  }
  const status = engineStatus(e);
  const message = `${ctx.what}: ${engineMessage(e)}`;
  if (status === 404)
    return new RuntimeError(ctx.notFound ?? 'instance-not-found', message, { runtime, cause: e });
  if (status === 400 && ctx.badRequest)
    return new RuntimeError(ctx.badRequest, message, { runtime, cause: e });
  if (status === 409 && ctx.conflict) return new RuntimeError(ctx.conflict, message, { runtime, cause: e });
  return new RuntimeError(ctx.fallback ?? 'internal', message, { runtime, cause: e });
}
