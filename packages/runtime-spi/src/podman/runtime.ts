import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { abortedError, throwIfAborted } from '../abort.js';
import { untilStarted } from '../wait-for-start.js';
import { RuntimeError } from '../errors.js';
import { matchesLabels, withManagedLabels } from '../labels.js';
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
import { containerEnv, validateContainerSpec } from '../docker/conventions.js';
import { PODMAN_RUNTIME, PodmanCli, podmanError, podmanMessage, type PodmanFailure } from './cli.js';
import { podmanService, releasePodmanService, type PodmanService, type ServiceAnswer } from './service.js';
import { podmanExec } from './exec.js';
import { ensurePodmanImage } from './image.js';
import { podmanLogs } from './logs.js';
import {
  createdInstance,
  podmanEnv,
  toCreateArgs,
  toCreateBody,
  toInstance,
  type PodmanInspect,
} from './spec.js';
import { podmanTerminal } from './terminal.js';

export interface PodmanRuntimeOptions {
  /** The podman binary (default `podman` on PATH). */
  podmanPath?: string;
  /** Name this runtime reports (default 'podman'). */
  name?: string;
  /** How often `podman wait` polls the container (default 20 ms; podman's own default is 250 ms). */
  waitIntervalMs?: number;
  /**
   * Create, start, wait and remove through podman's REST API on a private socket (a `podman system
   * service` started on first use, shared, ending itself when idle), falling back to the CLI
   * when it is unavailable (default true). `false`: the CLI only.
   */
  api?: boolean;
}

const DEFAULT_STOP_MS = 10_000;

/**
 * The Podman adapter: podman's own CLI (`--format json`, run with execa), and for create, start,
 * wait and remove its libpod REST API on a private `podman system service` started on first use (the CLI
 * when that is unavailable); never the Docker-compatible socket. Create it with
 * {@link createPodmanRuntime}.
 */
export class PodmanRuntime implements Runtime {
  readonly specificationVersion = RUNTIME_SPECIFICATION_VERSION;
  readonly name: string;
  readonly cli: PodmanCli;
  readonly #pulls = singleFlight<ImageInfo>({ runtime: PODMAN_RUNTIME });
  readonly #waitInterval: string;
  readonly #service: PodmanService | undefined;
  /** Instances this adapter created and has not started yet, by id (static facts only). */
  readonly #created = new Map<string, Instance>();
  /** Containers this adapter started (so `wait` need not check they left `created`), by id. */
  readonly #started = new Set<string>();
  /** Containers this adapter saw exit and has not started again: `stop` has nothing to do. */
  readonly #exited = new Set<string>();
  #closed = false;

  constructor(options: PodmanRuntimeOptions = {}) {
    this.name = options.name ?? PODMAN_RUNTIME;
    this.cli = new PodmanCli(options.podmanPath ?? 'podman');
    this.#waitInterval = `${options.waitIntervalMs ?? 20}ms`;
    this.#service = options.api === false ? undefined : podmanService(this.cli.path);
  }

  async available(opts: CallOptions = {}): Promise<Availability> {
    throwIfAborted(opts.signal, this.name);
    try {
      const result = await this.cli.run(
        ['version', '--format', '{{.Client.Version}}'],
        opts.signal ? { signal: opts.signal } : {},
      );
      if (result.exitCode !== 0)
        return {
          available: false,
          reason: `podman binary ${this.cli.path}: ${podmanMessage(result.stderr)}`,
        };
      // The REST service is not started here: a short command that only asks (or whose agent
      // stops before any run) would start a podman process for nothing. The first `create` does.
      return { available: true, version: result.stdout.trim() };
    } catch (e) {
      throwIfAborted(opts.signal, this.name);
      return { available: false, reason: (e as Error).message };
    }
  }

  async ensureImage(ref: string, opts: EnsureImageOptions = {}): Promise<ImageInfo> {
    this.#enter(opts.signal);
    return this.#pulls.run(ref, (signal) => ensurePodmanImage(this.cli, ref, signal), {
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
    });
  }

  async create(spec: InstanceSpec, opts: CallOptions = {}): Promise<Instance> {
    this.#enter(opts.signal);
    validateContainerSpec(spec, this.name);
    const what = `create container ${spec.name} from ${spec.image}`;
    const env = containerEnv(spec);
    const id =
      (await this.#createByApi(spec, env, what, opts.signal)) ??
      (await this.#createByCli(spec, env, what, opts));
    // Built from what podman was told rather than inspected: one CLI call less per create, and
    // remembered so start() needs none either.
    const instance = createdInstance(id, spec);
    this.#created.set(instance.id, instance);
    if (this.#created.size > 256) this.#created.delete(this.#created.keys().next().value as string);
    return instance;
  }

  async start(id: string, opts: CallOptions = {}): Promise<Instance> {
    this.#enter(opts.signal);
    // What start returns comes from create (same adapter) or an inspect *before* starting: right
    // after a short workload exits podman holds the container lock while it cleans up, and an
    // inspect then would wait for that.
    const before = this.#created.get(id) ?? (await this.#mustInspect(id, opts.signal));
    const failure: PodmanFailure = { what: `start container ${id}`, fallback: 'start-failed' };
    const answer = await this.#api('POST', `/containers/${encodeURIComponent(id)}/start`, opts.signal);
    if (answer === undefined) {
      // The service could not be reached, or the connection broke after the request was sent,
      // in which case the service may have started it already: start through the CLI only a
      // container still `created` (`podman start` on an exited one would run the workload again).
      const now =
        this.#service && before.state === 'created' ? await this.#mustInspect(id, opts.signal) : undefined;
      if (now === undefined || now.state === 'created')
        await this.cli.expect(['start', '--', id], failure, this.#sig(opts));
    } else if (answer.status !== 204 && answer.status !== 304) throw apiError(answer, failure);
    this.#created.delete(id);
    this.#exited.delete(id);
    this.#started.add(id);
    if (this.#started.size > 256) this.#started.delete(this.#started.values().next().value as string);
    if (before.state === 'running') return before;
    const { exitCode: _exit, finishedAt: _finished, ...rest } = before;
    return { ...rest, state: 'running', startedAt: new Date().toISOString() };
  }

  async stop(id: string, opts: StopOptions = {}): Promise<void> {
    this.#enter(opts.signal);
    // Seen exiting by this adapter's wait and not started since: no `podman stop` to pay for.
    if (this.#exited.has(id)) return;
    const seconds = Math.max(0, Math.ceil((opts.timeoutMs ?? DEFAULT_STOP_MS) / 1000));
    // podman stop is already a no-op for a stopped container.
    await this.cli.expect(
      ['stop', '--time', String(seconds), '--', id],
      { what: `stop container ${id}` },
      this.#sig(opts),
    );
  }

  async remove(id: string, opts: CallOptions = {}): Promise<void> {
    this.#enter(opts.signal);
    // Plain `rm` first: it reports a missing container (`rm --force` would not) and is enough
    // for a stopped one; a running one is then killed and removed.
    this.#created.delete(id);
    this.#started.delete(id);
    this.#exited.delete(id);
    const path = `/containers/${encodeURIComponent(id)}`;
    const answer = await this.#api('DELETE', path, opts.signal);
    if (answer !== undefined) {
      if (answer.status === 200) return;
      const error = apiError(answer, { what: `remove container ${id}` });
      if (error.code === 'instance-not-found' || !/running|paused|state improper/i.test(error.message))
        throw error;
      const forced = await this.#api('DELETE', `${path}?force=true&timeout=0`, opts.signal);
      if (forced?.status === 200) return;
      if (forced) throw apiError(forced, { what: `remove container ${id}` });
    }
    const plain = await this.cli.run(['rm', '--', id], this.#sig(opts));
    if (plain.exitCode === 0) return;
    const error = podmanError(plain, { what: `remove container ${id}` });
    if (error.code === 'instance-not-found' || !/running|paused|state improper/i.test(error.message))
      throw error;
    await this.cli.expect(
      ['rm', '--force', '--time', '0', '--', id],
      { what: `remove container ${id}` },
      this.#sig(opts),
    );
  }

  async inspect(id: string, opts: CallOptions = {}): Promise<Instance | undefined> {
    throwIfAborted(opts.signal, this.name);
    const [info] = await this.#inspectMany([id], opts.signal);
    return info ? toInstance(info) : undefined;
  }

  async list(filter: ListFilter = {}): Promise<Instance[]> {
    throwIfAborted(filter.signal, this.name);
    const wanted = { ...(filter.labels ?? {}), [MANAGED_LABEL]: 'true' };
    const summaries = await this.cli.json<Array<{ Id: string; Labels?: Record<string, string> | null }>>(
      ['ps', '--all', '--format', 'json', '--filter', `label=${MANAGED_LABEL}=true`],
      { what: 'list containers' },
      this.#sig(filter),
    );
    const ids = summaries.filter((s) => matchesLabels(s.Labels ?? {}, wanted)).map((s) => s.Id);
    return (await this.#inspectMany(ids, filter.signal))
      .filter((i): i is PodmanInspect => i !== undefined)
      .map(toInstance);
  }

  logs(id: string, opts: LogsOptions = {}): AsyncIterable<LogChunk> {
    return podmanLogs(this.cli, id, opts, (i, signal) => this.#mustInspect(i, signal));
  }

  async wait(id: string, opts: CallOptions = {}): Promise<ExitStatus> {
    this.#enter(opts.signal);
    for (;;) {
      // podman wait also answers 0 at once for a container never started, so look at the state
      // alongside (in parallel: no extra latency) — unless this adapter started it: then it is
      // not `created`, and one podman process less competes for the CPU. Seen `created` → the 0
      // may be that answer: wait until it has been started and ask again.
      const [stdout, before] = await Promise.all([
        this.#waitOutput(id, opts),
        this.#started.has(id) ? undefined : this.#mustInspect(id, opts.signal),
      ]);
      const exitCode = Number.parseInt(stdout.trim(), 10);
      if (Number.isNaN(exitCode))
        throw new RuntimeError('internal', `podman wait printed no exit code: ${stdout}`, {
          runtime: this.name,
        });
      if (exitCode !== 0 || before === undefined || before.state !== 'created') {
        if (this.#started.has(id)) this.#exited.add(id);
        if (this.#exited.size > 256) this.#exited.delete(this.#exited.values().next().value as string);
        return { exitCode };
      }
      await untilStarted(async () => (await this.#mustInspect(id, opts.signal)).state === 'created', {
        id,
        runtime: this.name,
        signal: opts.signal,
      });
    }
  }

  async exec(id: string, command: string[], opts: ExecOptions = {}): Promise<ExecHandle> {
    this.#enter(opts.signal);
    await this.#mustRun(id, opts.signal);
    return podmanExec(this.cli, id, command, opts);
  }

  async terminal(id: string, opts: TerminalOptions = {}): Promise<TerminalSession> {
    this.#enter(opts.signal);
    await this.#mustRun(id, opts.signal);
    return podmanTerminal(this.cli, id, opts);
  }

  async close(): Promise<void> {
    if (!this.#closed && this.#service) releasePodmanService(this.#service);
    this.#closed = true;
    this.#pulls.close();
  }

  /**
   * `create` through the REST service: the container's id, or `undefined` when the service
   * cannot be reached (then the CLI creates it). A connection that broke after the request went
   * out may have created it: a container of that name from this spec's image still `created` is
   * taken as this create's (names are unique per run attempt), so the CLI never meets its own
   * container as "name already in use".
   */
  async #createByApi(
    spec: InstanceSpec & { image: string },
    env: Record<string, string>,
    what: string,
    signal: AbortSignal | undefined,
  ): Promise<string | undefined> {
    if (!this.#service) return undefined;
    let answer: ServiceAnswer | undefined;
    try {
      answer = await this.#service.call('POST', '/containers/create', {
        signal,
        body: toCreateBody(spec, env),
      });
    } catch (e) {
      if (signal?.aborted) throw abortedError(signal, this.name);
      throw e;
    }
    if (answer === undefined) {
      const [found] = await this.#inspectMany([spec.name], signal);
      return found &&
        toInstance(found).state === 'created' &&
        matchesLabels(found.Config?.Labels ?? {}, withManagedLabels(spec.labels))
        ? found.Id
        : undefined;
    }
    if (answer.status === 201) return (JSON.parse(answer.body) as { Id: string }).Id;
    throw createError(apiError(answer, { what, fallback: 'invalid-spec' }), this.name);
  }

  /** `podman create`: the env in a 0600 file in a private directory, removed once podman has read it. */
  async #createByCli(
    spec: InstanceSpec & { image: string },
    env: Record<string, string>,
    what: string,
    opts: CallOptions,
  ): Promise<string> {
    // never in argv, where every user of the host can read it (run secrets travel in it)
    const { fileText, inherited } = podmanEnv(env);
    const dir = fileText ? await mkdtemp(join(tmpdir(), 'runt-podman-env-')) : undefined;
    let result;
    try {
      const file = dir ? join(dir, 'env') : undefined;
      if (file) await writeFile(file, fileText, { mode: 0o600 });
      result = await this.cli.run(
        toCreateArgs(spec, { ...(file ? { file } : {}), inherited: Object.keys(inherited) }),
        {
          ...this.#sig(opts),
          ...(Object.keys(inherited).length > 0 ? { env: inherited } : {}),
        },
      );
    } finally {
      if (dir) await rm(dir, { recursive: true, force: true });
    }
    if (result.exitCode !== 0)
      throw createError(podmanError(result, { what, fallback: 'invalid-spec' }), this.name);
    return result.stdout.trim();
  }

  /** What `podman wait` prints (the exit code), through the API when it answers, else the CLI. */
  async #waitOutput(id: string, opts: CallOptions): Promise<string> {
    const what = `wait for container ${id}`;
    const answer = await this.#api(
      'POST',
      `/containers/${encodeURIComponent(id)}/wait?interval=${this.#waitInterval}`,
      opts.signal,
    );
    if (answer?.status === 200) return answer.body;
    if (answer) throw apiError(answer, { what });
    return (
      await this.cli.expect(['wait', '--interval', this.#waitInterval, '--', id], { what }, this.#sig(opts))
    ).stdout;
  }

  /** One REST call; `undefined` means use the CLI. An aborted signal rejects with `aborted`. */
  async #api(
    method: string,
    path: string,
    signal: AbortSignal | undefined,
  ): Promise<ServiceAnswer | undefined> {
    if (!this.#service) return undefined;
    try {
      return await this.#service.call(method, path, { signal });
    } catch (e) {
      if (signal?.aborted) throw abortedError(signal, this.name);
      throw e;
    }
  }

  #enter(signal: AbortSignal | undefined): void {
    throwIfAborted(signal, this.name);
    if (this.#closed)
      throw new RuntimeError('runtime-unavailable', 'this podman runtime was closed', { runtime: this.name });
  }

  #sig(opts: CallOptions): { signal?: AbortSignal } {
    return opts.signal ? { signal: opts.signal } : {};
  }

  /** Inspects several containers in one podman call; a missing one comes back undefined. */
  async #inspectMany(
    ids: string[],
    signal: AbortSignal | undefined,
  ): Promise<Array<PodmanInspect | undefined>> {
    if (ids.length === 0) return [];
    const result = await this.cli.run(
      ['container', 'inspect', '--format', 'json', '--', ...ids],
      signal ? { signal } : {},
    );
    if (result.exitCode === 0) return JSON.parse(result.stdout) as PodmanInspect[];
    const error = podmanError(result, { what: `inspect ${ids.join(' ')}` });
    if (error.code !== 'instance-not-found') throw error;
    if (ids.length === 1) return [undefined];
    // One of them vanished meanwhile: ask one by one.
    return (await Promise.all(ids.map((id) => this.#inspectMany([id], signal)))).flat();
  }

  async #mustInspect(id: string, signal: AbortSignal | undefined): Promise<Instance> {
    const [info] = await this.#inspectMany([id], signal);
    if (!info) throw new RuntimeError('instance-not-found', `no container ${id}`, { runtime: this.name });
    return toInstance(info);
  }

  async #mustRun(id: string, signal: AbortSignal | undefined): Promise<void> {
    const instance = await this.#mustInspect(id, signal);
    if (instance.state !== 'running') {
      throw new RuntimeError('exec-failed', `container ${id} is ${instance.state}, not running`, {
        runtime: this.name,
      });
    }
  }
}

/** A failed create as the SPI names it: a taken name stays `instance-exists`, a missing image is `image-unavailable`, the rest `invalid-spec`. */
function createError(error: RuntimeError, runtime: string): RuntimeError {
  if (error.code === 'instance-exists') return error;
  const image = /image not known|no such image/i.test(error.message);
  return new RuntimeError(image ? 'image-unavailable' : 'invalid-spec', error.message, { runtime });
}

/** The RuntimeError an API answer means, as the CLI's `Error:` line would (404: not found). */
function apiError(answer: ServiceAnswer, failure: PodmanFailure): RuntimeError {
  let message = answer.body.trim();
  try {
    message = (JSON.parse(answer.body) as { message?: string }).message ?? message;
  } catch {
    // not JSON: the text itself
  }
  if (answer.status === 404)
    return new RuntimeError(failure.notFound ?? 'instance-not-found', `${failure.what}: ${message}`, {
      runtime: PODMAN_RUNTIME,
    });
  return podmanError({ stdout: '', stderr: `Error: ${message}`, exitCode: 125 }, failure);
}

/**
 * A Podman runtime driving the podman CLI (`podmanPath`, default `podman` on PATH).
 * @example
 * const podman = createPodmanRuntime();
 * await podman.ensureImage('runt-test/busybox:latest');
 * const inst = await podman.create({ name: 'w1', image: 'runt-test/busybox:latest', command: ['echo', 'hi'] });
 * await podman.start(inst.id);
 * console.log(await podman.wait(inst.id)); // { exitCode: 0 }
 */
export function createPodmanRuntime(options: PodmanRuntimeOptions = {}): PodmanRuntime {
  return new PodmanRuntime(options);
}
