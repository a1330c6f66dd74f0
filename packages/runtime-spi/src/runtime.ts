/**
 * The runtime contract. Nothing here assumes containers: a plain process, a microVM or an
 * Apple container must be able to implement it. Adapters live in `src/<name>/` and are
 * subpath exports (`@runt/runtime-spi/docker`), so an embedder loads only what it uses.
 */

/** Bumped on any breaking change to {@link Runtime}; adapters declare the version they implement. */
export const RUNTIME_SPECIFICATION_VERSION = 'v1' as const;
export type RuntimeSpecificationVersion = typeof RUNTIME_SPECIFICATION_VERSION;

/** Every call takes one of these; aborting rejects the call with an `aborted` RuntimeError. */
export interface CallOptions {
  signal?: AbortSignal;
}

export interface Availability {
  available: boolean;
  /** Engine or platform version when available (e.g. "28.2.2"). */
  version?: string;
  /** A human reason when not available, naming what is missing ("Docker socket /var/run/docker.sock: ENOENT"). */
  reason?: string;
}

export interface ImageInfo {
  ref: string;
  /** Content address when the runtime has one (sha256:…); the ref itself otherwise. */
  id: string;
}

export interface ResourceLimits {
  /** Fractional CPUs (1.5 = one and a half cores). */
  cpus?: number;
  memoryBytes?: number;
}

export interface InstanceSpec {
  /** Unique per runtime; used as the container / directory name. */
  name: string;
  /** Host path with the sources: mounted (containers) or the working directory (process). */
  sourcePath?: string;
  /** Host path of a config file handed to the workload (mounted read-only, or passed as RUNT_CONFIG_PATH). */
  configPath?: string;
  /** Image reference; required by image-based runtimes, ignored by `process`. */
  image?: string;
  /** argv; empty or absent means the image's / runtime's default (a shell that stays up). */
  command?: string[];
  env?: Record<string, string>;
  /** Working directory inside the instance. */
  workdir?: string;
  /** Caller labels; the runtime adds `runt.managed=true`. */
  labels?: Record<string, string>;
  limits?: ResourceLimits;
}

export type InstanceState = 'created' | 'running' | 'exited' | 'unknown';

export interface Instance {
  /** Runtime-assigned id (container id, instance directory name, …). */
  id: string;
  name: string;
  runtime: string;
  state: InstanceState;
  labels: Record<string, string>;
  image?: string;
  createdAt?: string;
  startedAt?: string;
  finishedAt?: string;
  /** Present once exited. */
  exitCode?: number;
  /** Adapter-specific facts worth storing with a workspace (pid, container id, …); JSON-serialisable. */
  details?: Record<string, unknown>;
}

export interface ExitStatus {
  exitCode: number;
  /** Set when the workload was ended by a signal (process runtime: "SIGKILL"). */
  signal?: string;
}

export type LogStream = 'stdout' | 'stderr';

export interface LogChunk {
  stream: LogStream;
  data: string;
  /**
   * The bytes the workload wrote, from adapters that read them as such (process): `data` is their
   * UTF-8 decoding (a character cut at the end waits for the next chunk), `bytes` exactly what was
   * read, so output that is not UTF-8 text (NUL, binary) can be passed on unchanged.
   */
  bytes?: Uint8Array;
  /** ISO-8601 time the chunk was read. */
  at: string;
}

export interface LogsOptions extends CallOptions {
  /** Keep reading until the instance exits or the signal aborts. */
  follow?: boolean;
  /** ISO-8601 or epoch ms: only chunks at or after this time (best effort per adapter). */
  since?: string | number;
}

export interface StopOptions extends CallOptions {
  /** Grace time after the polite signal before killing (default 10 000). */
  timeoutMs?: number;
}

export interface ExecOptions extends CallOptions {
  env?: Record<string, string>;
  /** Written to the command's stdin, then stdin is closed. */
  stdin?: string;
  workdir?: string;
}

/** A running exec: output streams while it runs; `exit` settles when it ends. */
export interface ExecHandle {
  output: AsyncIterable<LogChunk>;
  exit: Promise<ExitStatus>;
}

export interface TerminalOptions extends CallOptions {
  cols?: number;
  rows?: number;
  /** Shell or program to run (default: the instance's shell, e.g. /bin/sh). */
  command?: string[];
  env?: Record<string, string>;
}

export interface TerminalSession {
  write(data: string): void;
  resize(cols: number, rows: number): void;
  /** Subscribe to output; returns an unsubscribe function. */
  onData(listener: (data: string) => void): () => void;
  /** Settles when the terminal's program exits. */
  exit: Promise<ExitStatus>;
  /** Ends the session (kills the program if still running). */
  close(): void;
}

export interface ListFilter extends CallOptions {
  /** Every label given must match exactly. */
  labels?: Record<string, string>;
}

export interface EnsureImageOptions extends CallOptions {
  /** How long a pull/build may take (default generous: 10 minutes). Not the caller's deadline. */
  timeoutMs?: number;
}

export interface Runtime {
  readonly specificationVersion: RuntimeSpecificationVersion;
  readonly name: string;
  /**
   * `false` when the runtime never reads {@link InstanceSpec.sourcePath} (the in-memory fake), so
   * a caller need not prepare a directory for it. Absent means it may.
   */
  readonly usesSourcePath?: boolean;
  available(opts?: CallOptions): Promise<Availability>;
  /**
   * Idempotent and single-flight per ref. The work runs under the runtime's lifetime signal
   * and its own timeout; the caller's signal only stops the caller waiting (that caller
   * rejects with `aborted`, the others still get the image). See `singleFlight`.
   */
  ensureImage(ref: string, opts?: EnsureImageOptions): Promise<ImageInfo>;
  create(spec: InstanceSpec, opts?: CallOptions): Promise<Instance>;
  start(id: string, opts?: CallOptions): Promise<Instance>;
  /** Polite signal (SIGTERM), then kill after `timeoutMs`. Stopping a stopped instance is a no-op. */
  stop(id: string, opts?: StopOptions): Promise<void>;
  /** Removes a stopped instance (stops it first when running). */
  remove(id: string, opts?: CallOptions): Promise<void>;
  /** `undefined` when there is no such instance. */
  inspect(id: string, opts?: CallOptions): Promise<Instance | undefined>;
  /** Instances this runtime manages (`runt.managed=true`) matching the filter. */
  list(filter?: ListFilter): Promise<Instance[]>;
  /**
   * Without `follow`, what has been written so far; with it, also new output until the
   * instance exits. A missing instance rejects the first `next()` with `instance-not-found`;
   * aborting the signal makes the iteration throw an `aborted` RuntimeError.
   */
  logs(id: string, opts?: LogsOptions): AsyncIterable<LogChunk>;
  /**
   * Settles within a bound whatever state the instance was left in (also from a fresh adapter
   * re-adopting it after its starter died): its exit status once it exits (the real code when
   * the runtime recorded one; 137/SIGKILL when it was killed before it could), or `not-started`
   * when it is still `created` after `START_GRACE_MS` — never an unbounded wait.
   */
  wait(id: string, opts?: CallOptions): Promise<ExitStatus>;
  exec(id: string, command: string[], opts?: ExecOptions): Promise<ExecHandle>;
  terminal(id: string, opts?: TerminalOptions): Promise<TerminalSession>;
  /** Aborts in-flight background work (image pulls) and frees resources. Idempotent. */
  close(): Promise<void>;
}

/** Label every runtime adds to what it creates. */
export const MANAGED_LABEL = 'runt.managed';
