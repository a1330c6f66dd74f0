import {
  accessSync,
  closeSync,
  constants as fsConstants,
  mkdirSync,
  openSync,
  statSync,
  watch,
  type FSWatcher,
} from 'node:fs';
import { access, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, delimiter, isAbsolute, join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { abortable, abortedError, sleep, throwIfAborted } from '../abort.js';
import { RuntimeError } from '../errors.js';
import { matchesLabels, withManagedLabels } from '../labels.js';
import {
  RUNTIME_SPECIFICATION_VERSION,
  type CallOptions,
  type ExitStatus,
  type Instance,
  type InstanceSpec,
  type InstanceState,
  type LogChunk,
  type Runtime,
} from '../runtime.js';
import { singleFlight } from '../single-flight.js';
import { untilStarted } from '../wait-for-start.js';
import { execInInstance } from './exec.js';
import { readLogFiles } from './logs.js';
import { identify, isSameProcessAlive, hasArgument } from './proc-stat.js';
import {
  InstanceFiles,
  ensurePrivateDir,
  isValidId,
  writeFileAtomic,
  type InstanceRecord,
  type PidRecord,
} from './state.js';
import { openTerminal } from './terminal.js';

export interface ProcessRuntimeOptions {
  /** Where instance directories live (default `$RUNT_STATE_DIR`, else `~/.local/state/runt/process`). */
  stateDir?: string;
  /** Runtime name (default 'process'). */
  name?: string;
  /**
   * Host variables a workload inherits: `true` for all, or a list of names (default: PATH,
   * HOME, USER, LOGNAME, SHELL, LANG, LANGUAGE, LC_*, TERM, TZ, TMPDIR). Keeping the list
   * short keeps the caller's secrets out of workloads.
   */
  inheritEnv?: true | readonly string[];
  /** Shell for `terminal()` (default `$SHELL`, else /bin/sh). */
  shell?: string;
  /** How often stop and logs-follow look at the process (default 50 ms). */
  pollMs?: number;
  /**
   * How often `wait()` on an instance this adapter did not start (re-adopted from an earlier
   * process) looks at it when nothing was heard (default 1000 ms). Such a wait wakes on the
   * exit file appearing (`fs.watch` on the instance directory); the poll bounds it when the
   * wrapper was killed before it could write one, or the file system sends no events.
   */
  reattachPollMs?: number;
}

const DEFAULT_INHERITED = [
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'SHELL',
  'LANG',
  'LANGUAGE',
  'TERM',
  'TZ',
  'TMPDIR',
];
/** Default workload: a shell that stays up until stopped. */
const DEFAULT_COMMAND = ['/bin/sh', '-c', 'while :; do sleep 3600; done'];
/**
 * Runs the workload as a child and records its exit code in a file, so a wait() from any
 * later process can read it. It first writes its own pid (`wrapper-pid`): an adapter that died
 * between spawning it and writing the `pid` file leaves the next one a way to find it. The wrapper catches TERM/INT/HUP (a caught signal resets to
 * the default in the child, an ignored one would be inherited) and so outlives the
 * workload long enough to write the code; `$?` after a trap keeps the workload's status.
 */
const STARTUP_WINDOW_MS = 2000;
/** Between the wrapper writing the exit code and exiting: a re-adopted wait looks again this soon. */
const ENDING_POLL_MS = 10;
const RESEND_TERM_AFTER_MS = 200;
// The trap comes first: a TERM that arrives while the wrapper is still starting must not kill it
// before it can record the workload's exit code. Its own pid and the exit code are written by the
// shell builtin (one short write each, no child to spawn): only the workload is forked. The exit
// file is not written atomically, and need not be: it is read only once the wrapper is gone.
const EXIT_WRAPPER =
  'trap : HUP INT TERM; w=$1; f=$2; shift 2; echo $$ > "$w"; "$@"; c=$?; echo "$c" > "$f"; exit "$c"';

/**
 * Runs each instance as a plain host process in its own process group, with its state in
 * a directory: `instance.json`, `stdout.log`/`stderr.log` (files, not pipes, so an orphan
 * never blocks on a dead reader), a 0600 `pid` file with the process start time and boot
 * id (so a reused pid is never mistaken for the instance), and `exitcode`. A new adapter —
 * in this process or another — finds, inspects, follows, waits for and stops instances an
 * earlier one started. `image` is ignored; `sourcePath` (or `workdir`) is the working
 * directory. Linux reads /proc; other Unixes fall back to `ps`.
 * @example
 * const runtime = createProcessRuntime({ stateDir: '/tmp/runt-process' });
 * const inst = await runtime.create({ name: 'hello', command: ['/bin/sh', '-c', 'echo hi'] });
 * await runtime.start(inst.id);
 * console.log(await runtime.wait(inst.id)); // { exitCode: 0 }
 */
export function createProcessRuntime(options: ProcessRuntimeOptions = {}): Runtime {
  const name = options.name ?? 'process';
  const stateDir =
    options.stateDir ?? process.env.RUNT_STATE_DIR ?? join(homedir(), '.local', 'state', 'runt', 'process');
  const pollMs = options.pollMs ?? 50;
  const reattachPollMs = options.reattachPollMs ?? 1000;
  /**
   * The wrappers this adapter spawned, by instance id: `exited` settles on the child's `exit`
   * event, so a wait in the process that started the workload needs no polling.
   */
  const children = new Map<string, ChildEntry>();
  /** Instances this adapter created and has not started yet: `start` needs to read nothing back. */
  const fresh = new Map<string, { files: InstanceFiles; record: InstanceRecord }>();
  let stateDirReady = false;
  const images = singleFlight<{ ref: string; id: string }>({ runtime: name });

  const notFound = (id: string) =>
    new RuntimeError('instance-not-found', `no process instance "${id}" in ${stateDir}`, { runtime: name });

  const filesFor = (id: string): InstanceFiles | undefined =>
    isValidId(id) ? new InstanceFiles(stateDir, id) : undefined;

  const load = async (id: string): Promise<{ files: InstanceFiles; record: InstanceRecord } | undefined> => {
    const files = filesFor(id);
    const record = await files?.readRecord();
    return files && record ? { files, record } : undefined;
  };

  const mustLoad = async (id: string) => {
    const loaded = await load(id);
    if (!loaded) throw notFound(id);
    return loaded;
  };

  /**
   * The `pid` file, or — when its writer died after spawning the wrapper but before writing
   * it — the wrapper found again through the pid it wrote itself, checked by its command line
   * (which names this instance's exit file), and recorded in a fresh `pid` file.
   */
  const currentPid = async (files: InstanceFiles): Promise<PidRecord | undefined> => {
    const recorded = await files.readPid();
    if (recorded) return recorded;
    const wrapper = await files.readWrapperPid();
    if (wrapper === undefined) return undefined;
    if (!(await hasArgument(wrapper, files.exit))) return undefined;
    const identity = await identify(wrapper);
    if (!identity) return undefined;
    const startedAt = (await stat(files.wrapperPid).catch(() => undefined))?.mtime ?? new Date();
    const pidRecord: PidRecord = { ...identity, startedAt: startedAt.toISOString() };
    writeFileAtomic(files.pid, JSON.stringify(pidRecord));
    return pidRecord;
  };

  /** The pid record when that very process is still alive; undefined otherwise. */
  const livePid = async (files: InstanceFiles): Promise<PidRecord | undefined> => {
    const pid = await currentPid(files);
    return pid && (await isSameProcessAlive(pid)) ? pid : undefined;
  };

  /** True once the wrapper ran at some point (it wrote its pid or an exit code). */
  const everStarted = async (files: InstanceFiles): Promise<boolean> =>
    (await files.readWrapperPid()) !== undefined || (await files.readExit()) !== undefined;

  const exitStatusOf = async (files: InstanceFiles): Promise<ExitStatus> => {
    const recorded = await files.readExit();
    if (recorded)
      return recorded.signal
        ? { exitCode: recorded.exitCode, signal: recorded.signal }
        : { exitCode: recorded.exitCode };
    // The wrapper always writes the code unless it was killed outright.
    return { exitCode: 137, signal: 'SIGKILL' };
  };

  /** The instance in `state`, with its pid when it has one (what `describe` reads, or known: just created, just started). */
  const instanceOf = (
    files: InstanceFiles,
    record: InstanceRecord,
    state: InstanceState,
    pid?: PidRecord,
  ): Instance => ({
    id: record.id,
    name: record.name,
    runtime: name,
    state,
    labels: record.labels,
    createdAt: record.createdAt,
    details: {
      dir: files.dir,
      cwd: record.cwd,
      ...(pid ? { pid: pid.pid, processStartTime: pid.startTime } : {}),
    },
    ...(pid ? { startedAt: pid.startedAt } : {}),
  });

  const describe = async (files: InstanceFiles, record: InstanceRecord): Promise<Instance> => {
    // Whether it ever started is read before the pid: read after, a wrapper that wrote its pid
    // between the two reads (an instance just started by another adapter) looked exited.
    const started = await everStarted(files);
    const pid = await currentPid(files);
    const alive = pid ? await isSameProcessAlive(pid) : false;
    const state: InstanceState = alive ? 'running' : pid || started ? 'exited' : 'created';
    const instance = instanceOf(files, record, state, pid);
    if (state === 'exited') {
      const exit = await exitStatusOf(files);
      instance.exitCode = exit.exitCode;
      const finished = await stat(files.exit).catch(() => undefined);
      if (finished) instance.finishedAt = finished.mtime.toISOString();
    }
    return instance;
  };

  const hostEnv = (): Record<string, string> => {
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env)) {
      if (value === undefined) continue;
      const inherited =
        options.inheritEnv === true ||
        (options.inheritEnv ?? DEFAULT_INHERITED).includes(key) ||
        (!options.inheritEnv && key.startsWith('LC_'));
      if (inherited) env[key] = value;
    }
    return env;
  };

  const envFor = (record: InstanceRecord, extra?: Record<string, string>): Record<string, string> => ({
    ...hostEnv(),
    ...(record.spec.configPath === undefined ? {} : { RUNT_CONFIG_PATH: record.spec.configPath }),
    ...record.spec.env,
    ...extra,
    PWD: record.cwd,
  });

  const requireRunning = async (id: string, files: InstanceFiles) => {
    if (!(await livePid(files)))
      throw new RuntimeError('exec-failed', `process instance "${id}" is not running`, { runtime: name });
  };

  const runtime: Runtime = {
    specificationVersion: RUNTIME_SPECIFICATION_VERSION,
    name,

    async available(opts) {
      throwIfAborted(opts?.signal, name);
      if (process.platform === 'win32')
        return {
          available: false,
          reason: 'the process runtime needs a POSIX host (/bin/sh, process groups)',
        };
      try {
        await access('/bin/sh', fsConstants.X_OK);
      } catch {
        return { available: false, reason: '/bin/sh is missing or not executable' };
      }
      return { available: true, version: `node ${process.version} on ${process.platform}` };
    },

    ensureImage(ref, opts) {
      // Images mean nothing here; the call still behaves like everyone else's ensureImage.
      return images.run(ref, async () => ({ ref, id: ref }), {
        ...(opts?.signal ? { signal: opts.signal } : {}),
      });
    },

    async create(spec: InstanceSpec, opts?: CallOptions) {
      throwIfAborted(opts?.signal, name);
      if (!spec.name || !isValidId(spec.name)) {
        throw new RuntimeError(
          'invalid-spec',
          `instance name "${spec.name}" must match [A-Za-z0-9][A-Za-z0-9_.-]* (it names a directory)`,
          { runtime: name },
        );
      }
      const files = new InstanceFiles(stateDir, spec.name);
      const cwd = spec.workdir ?? spec.sourcePath ?? files.work;
      if (!isAbsolute(cwd))
        throw new RuntimeError('invalid-spec', `workdir/sourcePath must be absolute: ${cwd}`, {
          runtime: name,
        });
      // The calls from here to the spawn in `start` are synchronous: each is a few microseconds of
      // metadata on a local disk, less than a trip through the thread pool (see ensurePrivateDir).
      if (cwd !== files.work) {
        const info = statSync(cwd, { throwIfNoEntry: false });
        if (!info?.isDirectory())
          throw new RuntimeError('invalid-spec', `working directory ${cwd} does not exist`, {
            runtime: name,
          });
      }
      if (!stateDirReady) {
        ensurePrivateDir(stateDir);
        stateDirReady = true;
      }
      try {
        mkdirSync(files.dir, { mode: 0o700 });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
          throw new RuntimeError('instance-exists', `a process instance named "${spec.name}" exists`, {
            runtime: name,
          });
        }
        throw new RuntimeError('internal', `cannot create ${files.dir}`, { runtime: name, cause: error });
      }
      if (cwd === files.work) mkdirSync(files.work, { mode: 0o700 });
      const record: InstanceRecord = {
        id: spec.name,
        name: spec.name,
        spec,
        labels: withManagedLabels(spec.labels),
        cwd,
        createdAt: new Date().toISOString(),
      };
      writeFileAtomic(files.record, JSON.stringify(record, null, 2));
      fresh.set(record.id, { files, record });
      if (fresh.size > 256) fresh.delete(fresh.keys().next().value as string);
      // Just made: nothing in its directory to read back.
      return instanceOf(files, record, 'created');
    },

    async start(id, opts) {
      throwIfAborted(opts?.signal, name);
      // Created by this adapter and never started: no pid, no exit code, nothing to read back.
      const made = fresh.get(id);
      fresh.delete(id);
      const { files, record } = made ?? (await mustLoad(id));
      if (!made && (await livePid(files))) return describe(files, record);
      const env = envFor(record);
      const command = record.spec.command?.length ? record.spec.command : DEFAULT_COMMAND;
      assertRunnable(command[0] as string, env, record.cwd);
      // A restart keeps the logs (appended) but forgets the previous run's pid and exit code.
      if (!made)
        await Promise.all([
          rm(files.pid, { force: true }),
          rm(files.exit, { force: true }),
          rm(files.wrapperPid, { force: true }),
        ]);
      const out = openSync(files.log('stdout'), 'a', 0o600);
      const err = openSync(files.log('stderr'), 'a', 0o600);
      let pid: number | undefined;
      try {
        // child_process directly (execa runs exec): the workload gets the log files' real
        // descriptors, nothing is piped through this process, and it outlives it.
        const child = spawn(
          '/bin/sh',
          ['-c', EXIT_WRAPPER, 'runt-process', files.wrapperPid, files.exit, ...command],
          {
            cwd: record.cwd,
            env,
            detached: true,
            stdio: ['ignore', out, err],
          },
        );
        const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
        child.unref();
        pid = child.pid;
        if (pid !== undefined) {
          const entry: ChildEntry = { child, files, done: false, waiters: 0, exited: Promise.resolve() };
          entry.exited = new Promise<void>((resolve) =>
            child.once('exit', (code) => {
              entry.done = true;
              if (code !== null) entry.code = code;
              resolve();
            }),
          );
          children.set(id, entry);
        }
        if (pid === undefined) {
          const error = await spawnError;
          throw new RuntimeError('start-failed', `cannot start ${command[0]}: ${error.message}`, {
            runtime: name,
            cause: error,
          });
        }
      } finally {
        closeSync(out);
        closeSync(err);
      }
      const identity = await identify(pid);
      // An identity read after the process already ended (instant exit) is recorded with an
      // impossible start time: it can never be "alive", and the exit file says how it ended.
      const pidRecord: PidRecord = {
        ...(identity ?? { pid, startTime: 'exited-before-recorded' }),
        startedAt: new Date().toISOString(),
      };
      writeFileAtomic(files.pid, JSON.stringify(pidRecord));
      return identity ? instanceOf(files, record, 'running', pidRecord) : describe(files, record);
    },

    async stop(id, opts) {
      throwIfAborted(opts?.signal, name);
      // Seen exiting by this adapter: nothing to stop, nothing to read.
      const own = children.get(id);
      if (own?.done) return;
      const { files } = await mustLoad(id);
      const pid = await livePid(files);
      if (!pid) return;
      /** Sleeps `ms`, or less when this adapter's child exits first (no poll to wait out). */
      const nap = (ms: number, signal?: AbortSignal) =>
        own ? Promise.race([sleep(ms, signal, name), own.exited]) : sleep(ms, signal, name);
      const timeoutMs = opts?.timeoutMs ?? 10_000;
      signalGroup(pid.pid, 'SIGTERM');
      const deadline = Date.now() + timeoutMs;
      // A TERM that lands while the wrapper is forking the workload (the child still has the
      // wrapper's handler until it execs) is lost; for an instance that just started, send
      // one more once it has had time to exec.
      let resendAt =
        Date.now() - Date.parse(pid.startedAt) < STARTUP_WINDOW_MS
          ? Date.now() + RESEND_TERM_AFTER_MS
          : Number.POSITIVE_INFINITY;
      while (Date.now() < deadline && (await isSameProcessAlive(pid))) {
        if (Date.now() >= resendAt) {
          signalGroup(pid.pid, 'SIGTERM');
          resendAt = Number.POSITIVE_INFINITY;
        }
        await nap(Math.min(pollMs, Math.max(1, Math.min(deadline, resendAt) - Date.now())), opts?.signal);
      }
      if (await isSameProcessAlive(pid)) {
        signalGroup(pid.pid, 'SIGKILL');
        while (await isSameProcessAlive(pid)) await nap(pollMs);
        // Killed outright, the wrapper could not record anything; say what happened.
        await writeFile(files.exit, '137 SIGKILL\n', { flag: 'wx', mode: 0o600 }).catch(() => {});
      }
      // Anything the workload left behind in its group goes too.
      signalGroup(pid.pid, 'SIGKILL');
    },

    async remove(id, opts) {
      throwIfAborted(opts?.signal, name);
      // An instance this adapter started is known without reading instance.json back.
      const files = children.get(id)?.files ?? (await mustLoad(id)).files;
      await runtime.stop(id, { timeoutMs: 1000, ...(opts?.signal ? { signal: opts.signal } : {}) });
      children.delete(id);
      fresh.delete(id);
      await files.remove();
    },

    async inspect(id, opts) {
      throwIfAborted(opts?.signal, name);
      const loaded = await load(id);
      return loaded ? describe(loaded.files, loaded.record) : undefined;
    },

    async list(filter) {
      throwIfAborted(filter?.signal, name);
      const entries = await readdir(stateDir).catch(() => [] as string[]);
      const instances: Instance[] = [];
      for (const entry of entries.sort()) {
        const loaded = await load(entry);
        if (loaded && matchesLabels(loaded.record.labels, filter?.labels))
          instances.push(await describe(loaded.files, loaded.record));
      }
      return instances;
    },

    logs(id, opts): AsyncIterable<LogChunk> {
      return (async function* () {
        throwIfAborted(opts?.signal, name);
        const { files } = await mustLoad(id);
        const since = opts?.since === undefined ? undefined : new Date(opts.since).getTime();
        const own = children.get(id);
        yield* readLogFiles(
          files,
          {
            ...(opts?.follow ? { follow: true } : {}),
            ...(since === undefined ? {} : { since }),
            ...(opts?.signal ? { signal: opts.signal } : {}),
            ...(own ? { exited: own.exited } : {}),
            runtime: name,
          },
          own ? async () => !own.done : async () => (await livePid(files)) !== undefined,
        );
      })();
    },

    async wait(id, opts) {
      throwIfAborted(opts?.signal, name);
      // Started by this adapter: the child's exit event says when (the wrapper wrote the code
      // first), and nothing needs reading back first.
      const own = children.get(id);
      if (own) {
        // Unreferenced so the workload never holds the caller's process up, except while waited on.
        if (own.waiters++ === 0) own.child.ref();
        try {
          await abortable(own.exited, opts?.signal, name);
        } finally {
          if (--own.waiters === 0) own.child.unref();
        }
        // The wrapper exits with the workload's code (the one it wrote); killed itself, the file says how.
        return own.code !== undefined ? { exitCode: own.code } : exitStatusOf(own.files);
      }
      const { files } = await mustLoad(id);
      // Never started (its starter died before spawning): a bounded wait, then `not-started`.
      await untilStarted(async () => (await currentPid(files)) === undefined && !(await everStarted(files)), {
        id,
        runtime: name,
        signal: opts?.signal,
        pollMs,
      });
      // Started by another process (re-adopted): wake when the exit file appears, look at the
      // process at least every `reattachPollMs` (a wrapper killed outright writes nothing).
      const changes = watchExitFile(files, name);
      try {
        for (;;) {
          const pid = await currentPid(files);
          // No pid file and no wrapper left to find: it ran and is gone; the exit file says how.
          if (!pid || !(await isSameProcessAlive(pid))) return exitStatusOf(files);
          // The code is written just before the wrapper exits: look again in a moment.
          const ending = (await files.readExit()) !== undefined;
          await changes.next(ending ? ENDING_POLL_MS : reattachPollMs, opts?.signal);
        }
      } finally {
        changes.close();
      }
    },

    async exec(id, command, opts) {
      throwIfAborted(opts?.signal, name);
      const { files, record } = await mustLoad(id);
      if (command.length === 0)
        throw new RuntimeError('invalid-spec', 'exec needs a command', { runtime: name });
      await requireRunning(id, files);
      return execInInstance(command, {
        cwd: opts?.workdir ?? record.cwd,
        env: envFor(record, opts?.env),
        ...(opts?.stdin === undefined ? {} : { stdin: opts.stdin }),
        ...(opts?.signal ? { signal: opts.signal } : {}),
        runtime: name,
      });
    },

    async terminal(id, opts) {
      throwIfAborted(opts?.signal, name);
      const { files, record } = await mustLoad(id);
      await requireRunning(id, files);
      const env = { TERM: 'xterm-256color', ...envFor(record, opts?.env) };
      return openTerminal({
        command: opts?.command?.length ? opts.command : [options.shell ?? process.env.SHELL ?? '/bin/sh'],
        cwd: record.cwd,
        env,
        cols: opts?.cols ?? 80,
        rows: opts?.rows ?? 24,
      });
    },

    async close() {
      images.close();
    },
  };
  return runtime;

  function assertRunnable(file: string, env: Record<string, string>, cwd: string): void {
    const candidates = file.includes('/')
      ? [isAbsolute(file) ? file : join(cwd, file)]
      : (env.PATH ?? '')
          .split(delimiter)
          .filter(Boolean)
          .map((dir) => join(dir, file));
    for (const candidate of candidates) {
      try {
        accessSync(candidate, fsConstants.X_OK);
        return;
      } catch {
        // not here; the next one
      }
    }
    throw new RuntimeError(
      'start-failed',
      `cannot start "${file}": not found or not executable${file.includes('/') ? '' : ' on PATH'}`,
      { runtime: name },
    );
  }
}

/** A wrapper this adapter spawned. */
interface ChildEntry {
  child: ChildProcess;
  files: InstanceFiles;
  /** Settles on the child's `exit` event. */
  exited: Promise<void>;
  done: boolean;
  /** The wrapper's own exit code (the workload's); unset when a signal ended the wrapper. */
  code?: number;
  /** `wait()` calls in progress: the child is referenced (keeps the event loop up) while any is. */
  waiters: number;
}

/**
 * Wakes a re-adopted wait when the instance's exit file is written: `next(ms)` resolves on the
 * next such event or after `ms`, whichever comes first (and at once for an event since the last
 * call). Without `fs.watch` (some file systems) it is a plain sleep.
 */
function watchExitFile(
  files: InstanceFiles,
  runtime: string,
): {
  next: (ms: number, signal: AbortSignal | undefined) => Promise<void>;
  close: () => void;
} {
  let seen = false;
  let wake: (() => void) | undefined;
  let watcher: FSWatcher | undefined;
  const exitName = basename(files.exit);
  try {
    watcher = watch(files.dir, { persistent: false }, (_event, file) => {
      if (file !== null && file !== exitName) return;
      seen = true;
      wake?.();
    });
    watcher.on('error', () => watcher?.close());
  } catch {
    watcher = undefined;
  }
  return {
    async next(ms, signal) {
      throwIfAborted(signal, runtime);
      if (!seen)
        await new Promise<void>((resolve, reject) => {
          const done = () => {
            clearTimeout(timer);
            signal?.removeEventListener('abort', onAbort);
            wake = undefined;
            resolve();
          };
          const onAbort = () => {
            clearTimeout(timer);
            wake = undefined;
            reject(abortedError(signal, runtime));
          };
          const timer = setTimeout(done, ms);
          wake = done;
          signal?.addEventListener('abort', onAbort, { once: true });
        });
      seen = false;
    },
    close: () => watcher?.close(),
  };
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is gone already.
  }
}
