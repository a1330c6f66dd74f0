import Docker from 'dockerode';
import { abortable, throwIfAborted } from '../abort.js';
import { untilStarted } from '../wait-for-start.js';
import { RuntimeError } from '../errors.js';
import {
  MANAGED_LABEL,
  RUNTIME_SPECIFICATION_VERSION,
  type Availability,
  type CallOptions,
  type EnsureImageOptions,
  type ExecHandle,
  type ExecOptions,
  type ExitStatus,
  type ImageInfo,
  type Instance,
  type InstanceSpec,
  type ListFilter,
  type LogChunk,
  type LogsOptions,
  type Runtime,
  type StopOptions,
  type TerminalOptions,
  type TerminalSession,
} from '../runtime.js';
import { singleFlight } from '../single-flight.js';
import {
  DOCKER_RUNTIME,
  engineStatus,
  resolveDockerEndpoint,
  toDockerError,
  type DockerEndpoint,
} from './connection.js';
import { validateContainerSpec } from './conventions.js';
import { dockerExec } from './exec.js';
import { ensureDockerImage } from './image.js';
import { dockerLogs } from './logs.js';
import { toCreateOptions, toInstance } from './spec.js';
import { dockerTerminal } from './terminal.js';

export interface DockerRuntimeOptions {
  /** Unix socket of the engine; wins over `host`. */
  socketPath?: string;
  /** DOCKER_HOST-style address (`unix:///path`, `tcp://host:2375`); default `$DOCKER_HOST`, else /var/run/docker.sock. */
  host?: string;
  /** Name this runtime reports (default 'docker'). */
  name?: string;
  /** How long `available()` waits for the engine (default 5 000 ms). */
  availableTimeoutMs?: number;
}

const DEFAULT_STOP_MS = 10_000;

/**
 * The Docker adapter: one engine, reached over its API socket with dockerode.
 * Create it with {@link createDockerRuntime}.
 */
export class DockerRuntime implements Runtime {
  readonly specificationVersion = RUNTIME_SPECIFICATION_VERSION;
  readonly name: string;
  /** The engine address errors name (socket path or tcp URL). */
  readonly endpoint: DockerEndpoint;
  readonly #docker: Docker;
  readonly #pulls = singleFlight<ImageInfo>({ runtime: DOCKER_RUNTIME });
  readonly #availableTimeoutMs: number;
  #closed = false;

  constructor(options: DockerRuntimeOptions = {}) {
    this.name = options.name ?? DOCKER_RUNTIME;
    this.endpoint = resolveDockerEndpoint(options);
    this.#docker = new Docker(this.endpoint.options);
    this.#availableTimeoutMs = options.availableTimeoutMs ?? 5_000;
  }

  async available(opts: CallOptions = {}): Promise<Availability> {
    throwIfAborted(opts.signal, this.name);
    const deadline = AbortSignal.timeout(this.#availableTimeoutMs);
    const signal = opts.signal ? AbortSignal.any([opts.signal, deadline]) : deadline;
    try {
      const version = await abortable(this.#docker.version(), signal, this.name);
      return { available: true, version: version.Version };
    } catch (e) {
      throwIfAborted(opts.signal, this.name);
      const reason = deadline.aborted
        ? `Docker socket ${this.endpoint.label}: no answer within ${this.#availableTimeoutMs} ms`
        : toDockerError(e, this.endpoint, { what: `Docker engine at ${this.endpoint.label}` }).message;
      return { available: false, reason };
    }
  }

  async ensureImage(ref: string, opts: EnsureImageOptions = {}): Promise<ImageInfo> {
    this.#enter(opts.signal);
    return this.#pulls.run(ref, (signal) => ensureDockerImage(this.#docker, this.endpoint, ref, signal), {
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
    });
  }

  async create(spec: InstanceSpec, opts: CallOptions = {}): Promise<Instance> {
    this.#enter(opts.signal);
    validateContainerSpec(spec, this.name);
    const what = `create container ${spec.name} from ${spec.image}`;
    try {
      const container = await abortable(
        this.#docker.createContainer(toCreateOptions(spec)),
        opts.signal,
        this.name,
      );
      return toInstance(await container.inspect());
    } catch (e) {
      throw this.#error(e, {
        what,
        notFound: 'image-unavailable',
        conflict: 'instance-exists',
        badRequest: 'invalid-spec',
        fallback: 'internal',
      });
    }
  }

  async start(id: string, opts: CallOptions = {}): Promise<Instance> {
    this.#enter(opts.signal);
    try {
      await abortable(this.#docker.getContainer(id).start(), opts.signal, this.name);
    } catch (e) {
      // 304: already running, which start treats as success.
      if (engineStatus(e) !== 304)
        throw this.#error(e, { what: `start container ${id}`, fallback: 'start-failed' });
    }
    return this.#mustInspect(id, opts.signal);
  }

  async stop(id: string, opts: StopOptions = {}): Promise<void> {
    this.#enter(opts.signal);
    const t = Math.max(0, Math.ceil((opts.timeoutMs ?? DEFAULT_STOP_MS) / 1000));
    try {
      await abortable(this.#docker.getContainer(id).stop({ t }), opts.signal, this.name);
    } catch (e) {
      // 304: not running, so stopping is a no-op.
      if (engineStatus(e) !== 304) throw this.#error(e, { what: `stop container ${id}` });
    }
  }

  async remove(id: string, opts: CallOptions = {}): Promise<void> {
    this.#enter(opts.signal);
    try {
      await abortable(this.#docker.getContainer(id).remove({ force: true, v: true }), opts.signal, this.name);
    } catch (e) {
      throw this.#error(e, { what: `remove container ${id}` });
    }
  }

  async inspect(id: string, opts: CallOptions = {}): Promise<Instance | undefined> {
    throwIfAborted(opts.signal, this.name);
    try {
      return toInstance(await abortable(this.#docker.getContainer(id).inspect(), opts.signal, this.name));
    } catch (e) {
      if (engineStatus(e) === 404) return undefined;
      throw this.#error(e, { what: `inspect container ${id}` });
    }
  }

  async list(filter: ListFilter = {}): Promise<Instance[]> {
    throwIfAborted(filter.signal, this.name);
    const labels = { ...(filter.labels ?? {}), [MANAGED_LABEL]: 'true' };
    try {
      const summaries = await abortable(
        this.#docker.listContainers({
          all: true,
          filters: { label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) },
        }),
        filter.signal,
        this.name,
      );
      const found = await Promise.all(summaries.map((s) => this.inspect(s.Id, filter)));
      return found.filter((i): i is Instance => i !== undefined);
    } catch (e) {
      throw this.#error(e, { what: 'list containers' });
    }
  }

  logs(id: string, opts: LogsOptions = {}): AsyncIterable<LogChunk> {
    return dockerLogs(this.#docker, this.endpoint, id, opts);
  }

  async wait(id: string, opts: CallOptions = {}): Promise<ExitStatus> {
    this.#enter(opts.signal);
    // The engine's "not-running" wait answers 0 at once for a container never started, so wait
    // for it to leave `created` first — within the start grace, then `not-started`.
    await untilStarted(async () => (await this.#mustInspect(id, opts.signal)).state === 'created', {
      id,
      runtime: this.name,
      signal: opts.signal,
    });
    try {
      const result = (await abortable(
        this.#docker.getContainer(id).wait({ condition: 'not-running', abortSignal: opts.signal }),
        opts.signal,
        this.name,
      )) as { StatusCode: number };
      return { exitCode: result.StatusCode };
    } catch (e) {
      throw this.#error(e, { what: `wait for container ${id}` });
    }
  }

  async exec(id: string, command: string[], opts: ExecOptions = {}): Promise<ExecHandle> {
    this.#enter(opts.signal);
    return dockerExec(this.#docker, this.endpoint, id, command, opts);
  }

  async terminal(id: string, opts: TerminalOptions = {}): Promise<TerminalSession> {
    this.#enter(opts.signal);
    return dockerTerminal(this.#docker, this.endpoint, id, opts);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#pulls.close();
  }

  #enter(signal: AbortSignal | undefined): void {
    throwIfAborted(signal, this.name);
    if (this.#closed)
      throw new RuntimeError('runtime-unavailable', 'this docker runtime was closed', { runtime: this.name });
  }

  async #mustInspect(id: string, signal: AbortSignal | undefined): Promise<Instance> {
    const instance = await this.inspect(id, { ...(signal ? { signal } : {}) });
    if (!instance) throw new RuntimeError('instance-not-found', `no container ${id}`, { runtime: this.name });
    return instance;
  }

  #error(e: unknown, ctx: Parameters<typeof toDockerError>[2]): RuntimeError {
    return toDockerError(e, this.endpoint, ctx);
  }
}

/**
 * A Docker runtime. It talks to `socketPath`, else `host`, else `$DOCKER_HOST`, else
 * /var/run/docker.sock; nothing is contacted until the first call.
 * @example
 * const docker = createDockerRuntime({ socketPath: '/run/runt-docker/docker.sock' });
 * await docker.ensureImage('runt-test/busybox:latest');
 * const inst = await docker.create({ name: 'w1', image: 'runt-test/busybox:latest', command: ['echo', 'hi'] });
 * await docker.start(inst.id);
 * console.log(await docker.wait(inst.id)); // { exitCode: 0 }
 */
export function createDockerRuntime(options: DockerRuntimeOptions = {}): DockerRuntime {
  return new DockerRuntime(options);
}
