import { abortable, abortedError, sleep, throwIfAborted } from '../abort.js';
import { untilStarted } from '../wait-for-start.js';
import { AsyncQueue } from '../async-queue.js';
import { RuntimeError } from '../errors.js';
import { matchesLabels, withManagedLabels } from '../labels.js';
import {
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
import { FakeEngine, type FakeInstanceRecord } from './engine.js';
import { FakeProcess } from './shell.js';
import { FakeTerminal } from './terminal.js';

export type FakeMethod =
  | 'available'
  | 'ensureImage'
  | 'create'
  | 'start'
  | 'stop'
  | 'remove'
  | 'inspect'
  | 'list'
  | 'logs'
  | 'wait'
  | 'exec'
  | 'terminal';

/** One recorded call: the method and the arguments exactly as given. */
export interface FakeCall {
  method: FakeMethod;
  args: unknown[];
}

/** An error to throw, or a function deciding per call (return undefined to let the call through). */
export type FakeFailure = Error | ((call: FakeCall) => Error | undefined);

export interface FakeRuntimeOptions {
  /** Defaults to 'fake'. */
  name?: string;
  /** Shared state; pass the same engine to several runtimes to model an adapter restart. */
  engine?: FakeEngine;
  /** What `available()` answers (default `{ available: true, version: 'fake' }`). */
  availability?: Availability;
  /** Refs the fake registry can pull: a list or a predicate (default: every ref). */
  images?: readonly string[] | ((ref: string) => boolean);
  /** How long one pull takes (default 0). */
  pullDelayMs?: number;
  /** Delay before each call of a method does its work (abortable by the call's signal). */
  delays?: Partial<Record<FakeMethod, number>>;
  /** Make a method fail, always or when the function says so. */
  failures?: Partial<Record<FakeMethod, FakeFailure>>;
  /** Working directory when a spec has no `workdir` (default '/'). */
  defaultWorkdir?: string;
  /**
   * Keep every call in `calls` (default true: tests read them). An agent running the fake
   * runtime for load tests and demos passes false: the record holds every spec, signal and
   * option it was given for the life of the process (issue 9: it grew the agent's heap, and its
   * GC time, with every run).
   */
  recordCalls?: boolean;
}

export interface FakeRuntime extends Runtime {
  /** Every call so far, in order. */
  readonly calls: FakeCall[];
  /** Refs actually pulled (one entry per pull, so single-flight shows as one entry). */
  readonly pulls: string[];
  readonly engine: FakeEngine;
  /** The next call of `method` throws `error` (queued; one per call). */
  failNext(method: FakeMethod, error: Error): void;
  /** Calls of one method. */
  callsOf(method: FakeMethod): FakeCall[];
}

const DEFAULT_COMMAND = ['/bin/sh', '-c', 'sleep infinity'];

/** The lists and maps of an `InstanceSpec` (the rest are plain values). */
type SpecCollections = 'command' | 'env' | 'labels' | 'limits';

/**
 * The engine's own copy of a spec (the caller may change its lists and maps afterwards): a
 * spread with the lists and maps copied. Not `structuredClone` (~4 µs a create, over 1 % of an
 * agent's CPU per run under the bench's fake runtime; issue 9), nor a rest destructuring, which
 * V8 runs slower still.
 */
function copySpec(spec: InstanceSpec): InstanceSpec {
  // Fails to compile once `InstanceSpec` gains another list or map, until it is copied below.
  const plain: Partial<Record<Exclude<keyof InstanceSpec, SpecCollections>, string | number | boolean>> =
    spec;
  const copy = { ...plain } as InstanceSpec;
  if (spec.command) copy.command = [...spec.command];
  if (spec.env) copy.env = { ...spec.env };
  if (spec.labels) copy.labels = { ...spec.labels };
  if (spec.limits) copy.limits = { ...spec.limits };
  return copy;
}

/**
 * An in-memory runtime for tests: deterministic ids, scripted failures and delays at any
 * step, recorded calls, and workloads written in a tiny subset of `sh` (see README) so
 * the same commands run here, on a host and in a busybox image. It passes the conformance
 * suite like every other adapter.
 * @example
 * const rt = createFakeRuntime({ failures: { start: new RuntimeError('start-failed', 'boom') } });
 * const inst = await rt.create({ name: 'a', command: ['/bin/sh', '-c', 'echo hi; exit 3'] });
 * await expect(rt.start(inst.id)).rejects.toMatchObject({ code: 'start-failed' });
 * rt.calls.map((c) => c.method); // ['create', 'start']
 */
export function createFakeRuntime(options: FakeRuntimeOptions = {}): FakeRuntime {
  const name = options.name ?? 'fake';
  const engine = options.engine ?? new FakeEngine();
  const calls: FakeCall[] = [];
  const pulls: string[] = [];
  const queuedFailures = new Map<FakeMethod, Error[]>();
  const pullFlight = singleFlight<ImageInfo>({ runtime: name });
  let closed = false;

  const pullable = (ref: string): boolean => {
    const images = options.images;
    if (images === undefined) return true;
    return typeof images === 'function' ? images(ref) : images.includes(ref);
  };

  /** Records the call, honours the signal, scripted failures and delays. */
  const enter = async (
    method: FakeMethod,
    args: unknown[],
    signal: AbortSignal | undefined,
  ): Promise<void> => {
    // The call's record is made only when it is kept or a failure function reads it (an agent
    // load-testing with the fake keeps none: issue 9).
    const record = options.recordCalls !== false;
    if (record) calls.push({ method, args });
    throwIfAborted(signal, name);
    if (closed && method !== 'inspect' && method !== 'list') {
      throw new RuntimeError('runtime-unavailable', 'this fake runtime was closed', { runtime: name });
    }
    if (queuedFailures.size > 0) {
      const queued = queuedFailures.get(method)?.shift();
      if (queued) throw queued;
    }
    const failure = options.failures?.[method];
    const error =
      typeof failure === 'function' ? failure(record ? calls[calls.length - 1]! : { method, args }) : failure;
    if (error) throw error;
    const delay = options.delays?.[method];
    if (delay) await sleep(delay, signal, name);
  };

  const mustFind = (id: string): FakeInstanceRecord => {
    const record = engine.find(id);
    if (!record) throw new RuntimeError('instance-not-found', `no instance "${id}"`, { runtime: name });
    return record;
  };

  // Optional fields set one by one, not spread from a new object each (issue 9: ~1 KB a run).
  const toInstance = (r: FakeInstanceRecord): Instance => {
    const instance: Instance = {
      id: r.id,
      name: r.name,
      runtime: name,
      state: r.state,
      labels: { ...r.labels },
    };
    if (r.spec.image !== undefined) instance.image = r.spec.image;
    instance.createdAt = r.createdAt;
    if (r.startedAt !== undefined) instance.startedAt = r.startedAt;
    if (r.finishedAt !== undefined) instance.finishedAt = r.finishedAt;
    if (r.exit !== undefined) instance.exitCode = r.exit.exitCode;
    instance.details = { workdir: workdirOf(r.spec) };
    return instance;
  };

  const workdirOf = (spec: InstanceSpec): string => spec.workdir ?? options.defaultWorkdir ?? '/';
  const envOf = (spec: InstanceSpec, extra?: Record<string, string>): Record<string, string> => ({
    PATH: '/usr/local/bin:/usr/bin:/bin',
    HOME: '/root',
    ...(spec.configPath === undefined ? {} : { RUNT_CONFIG_PATH: spec.configPath }),
    ...spec.env,
    ...extra,
  });

  const waitForExit = async (record: FakeInstanceRecord, signal?: AbortSignal): Promise<ExitStatus> => {
    while (!(record.state === 'exited' && record.exit)) {
      throwIfAborted(signal, name);
      await engine.nextChange(signal, record);
    }
    return record.exit;
  };

  const runtime: FakeRuntime = {
    specificationVersion: RUNTIME_SPECIFICATION_VERSION,
    // In memory: `sourcePath` is never read, so callers make no directory for it.
    usesSourcePath: false,
    name,
    calls,
    pulls,
    engine,

    failNext(method, error) {
      const queue = queuedFailures.get(method) ?? [];
      queue.push(error);
      queuedFailures.set(method, queue);
    },

    callsOf: (method) => calls.filter((c) => c.method === method),

    async available(opts?: CallOptions) {
      await enter('available', [opts], opts?.signal);
      return options.availability ?? { available: true, version: 'fake' };
    },

    async ensureImage(ref: string, opts?: EnsureImageOptions) {
      await enter('ensureImage', [ref, opts], opts?.signal);
      // Even a local hit goes through the flight, so a caller that gives up is told so.
      return pullFlight.run(
        ref,
        async (signal) => {
          const local = engine.images.get(ref);
          if (local) return { ref, id: local };
          pulls.push(ref);
          if (options.pullDelayMs) await sleep(options.pullDelayMs, signal, name);
          if (!pullable(ref))
            throw new RuntimeError('image-unavailable', `image "${ref}" cannot be pulled`, { runtime: name });
          const id = `sha256:${Buffer.from(ref).toString('hex').padEnd(64, '0').slice(0, 64)}`;
          engine.images.set(ref, id);
          return { ref, id };
        },
        {
          ...(opts?.signal ? { signal: opts.signal } : {}),
          ...(opts?.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
        },
      );
    },

    async create(spec: InstanceSpec, opts?: CallOptions) {
      await enter('create', [spec, opts], opts?.signal);
      if (!spec.name) throw new RuntimeError('invalid-spec', 'an instance needs a name', { runtime: name });
      if (engine.find(spec.name))
        throw new RuntimeError('instance-exists', `an instance named "${spec.name}" exists`, {
          runtime: name,
        });
      if (spec.image !== undefined && !engine.images.has(spec.image)) {
        throw new RuntimeError(
          'image-unavailable',
          `image "${spec.image}" is not present; call ensureImage first`,
          { runtime: name },
        );
      }
      const record: FakeInstanceRecord = {
        id: engine.newId(),
        name: spec.name,
        spec: copySpec(spec),
        labels: withManagedLabels(spec.labels),
        state: 'created',
        createdAt: new Date().toISOString(),
        startedAt: undefined,
        finishedAt: undefined,
        exit: undefined,
        logs: [],
        process: undefined,
        children: new Set(),
      };
      engine.add(record);
      engine.changed(record);
      return toInstance(record);
    },

    async start(id: string, opts?: CallOptions) {
      await enter('start', [id, opts], opts?.signal);
      const record = mustFind(id);
      if (record.state === 'running') return toInstance(record);
      const proc = new FakeProcess(record.spec.command?.length ? record.spec.command : DEFAULT_COMMAND, {
        env: envOf(record.spec),
        cwd: workdirOf(record.spec),
        write: (stream, data) => engine.appendLog(record, stream, data),
      });
      record.process = proc;
      record.state = 'running';
      record.startedAt = new Date().toISOString();
      record.finishedAt = undefined;
      record.exit = undefined;
      void proc.exit.then((exit) => {
        if (record.process !== proc) return;
        record.exit = exit;
        record.state = 'exited';
        record.finishedAt = new Date().toISOString();
        record.process = undefined;
        for (const child of record.children) child.kill('SIGKILL');
        record.children.clear();
        engine.changed(record);
      });
      engine.changed(record);
      return toInstance(record);
    },

    async stop(id: string, opts?: StopOptions) {
      await enter('stop', [id, opts], opts?.signal);
      const record = mustFind(id);
      const proc = record.process;
      if (record.state !== 'running' || !proc) return;
      proc.kill('SIGTERM');
      const timeoutMs = opts?.timeoutMs ?? 10_000;
      const graceful = await abortable(
        Promise.race([
          proc.exit.then(() => true),
          new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs).unref()),
        ]),
        opts?.signal,
        name,
      );
      if (!graceful) proc.kill('SIGKILL');
      await waitForExit(record);
    },

    async remove(id: string, opts?: CallOptions) {
      await enter('remove', [id, opts], opts?.signal);
      const record = mustFind(id);
      if (record.process) {
        record.process.kill('SIGKILL');
        await waitForExit(record);
      }
      engine.delete(record);
      engine.changed(record);
    },

    async inspect(id: string, opts?: CallOptions) {
      await enter('inspect', [id, opts], opts?.signal);
      const record = engine.find(id);
      return record ? toInstance(record) : undefined;
    },

    async list(filter?: ListFilter) {
      await enter('list', [filter], filter?.signal);
      return [...engine.instances.values()]
        .filter((r) => matchesLabels(r.labels, filter?.labels))
        .map(toInstance);
    },

    logs(id: string, opts?: LogsOptions): AsyncIterable<LogChunk> {
      return (async function* () {
        await enter('logs', [id, opts], opts?.signal);
        const record = mustFind(id);
        const since = opts?.since === undefined ? undefined : new Date(opts.since).getTime();
        const wanted = (c: LogChunk) => since === undefined || Date.parse(c.at) >= since;
        let next = 0;
        for (;;) {
          while (next < record.logs.length) {
            const chunk = record.logs[next++] as LogChunk;
            if (wanted(chunk)) yield { ...chunk };
          }
          if (!opts?.follow || record.state !== 'running') return;
          throwIfAborted(opts.signal, name);
          await engine.nextChange(opts.signal, record);
          if (opts.signal?.aborted) throw abortedError(opts.signal, name);
        }
      })();
    },

    async wait(id: string, opts?: CallOptions) {
      await enter('wait', [id, opts], opts?.signal);
      const record = mustFind(id);
      // Mostly started already (the agent waits right after `start`): no start poll set up.
      if (record.state === 'created')
        await untilStarted(async () => record.state === 'created', {
          id,
          runtime: name,
          signal: opts?.signal,
          pollMs: 20,
        });
      return waitForExit(record, opts?.signal);
    },

    async exec(id: string, command: string[], opts?: ExecOptions): Promise<ExecHandle> {
      await enter('exec', [id, command, opts], opts?.signal);
      const record = mustFind(id);
      if (record.state !== 'running')
        throw new RuntimeError('exec-failed', `instance "${id}" is not running`, { runtime: name });
      if (command.length === 0)
        throw new RuntimeError('invalid-spec', 'exec needs a command', { runtime: name });
      const output = new AsyncQueue<LogChunk>();
      const proc = new FakeProcess(command, {
        env: envOf(record.spec, opts?.env),
        cwd: opts?.workdir ?? workdirOf(record.spec),
        ...(opts?.stdin === undefined ? {} : { stdin: opts.stdin }),
        write: (stream, data) => output.push({ stream, data, at: new Date().toISOString() }),
      });
      record.children.add(proc);
      const onAbort = () => proc.kill('SIGKILL');
      opts?.signal?.addEventListener('abort', onAbort, { once: true });
      const exit = proc.exit.then((status) => {
        record.children.delete(proc);
        opts?.signal?.removeEventListener('abort', onAbort);
        output.end();
        if (opts?.signal?.aborted) throw abortedError(opts.signal, name);
        return status;
      });
      exit.catch(() => {});
      return { output, exit };
    },

    async terminal(id: string, opts?: TerminalOptions): Promise<TerminalSession> {
      await enter('terminal', [id, opts], opts?.signal);
      const record = mustFind(id);
      if (record.state !== 'running')
        throw new RuntimeError('exec-failed', `instance "${id}" is not running`, { runtime: name });
      const session = new FakeTerminal({
        env: envOf(record.spec, opts?.env),
        cwd: workdirOf(record.spec),
        ...(opts?.cols === undefined ? {} : { cols: opts.cols }),
        ...(opts?.rows === undefined ? {} : { rows: opts.rows }),
      });
      const child = { kill: () => session.close() };
      record.children.add(child);
      void session.exit.then(() => record.children.delete(child));
      return session;
    },

    async close() {
      closed = true;
      pullFlight.close();
    },
  };
  return runtime;
}
