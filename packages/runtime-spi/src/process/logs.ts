import { watch, type FSWatcher } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { sleep, throwIfAborted } from '../abort.js';
import type { LogChunk, LogStream } from '../runtime.js';
import type { InstanceFiles } from './state.js';

const STREAMS: LogStream[] = ['stdout', 'stderr'];
/** Between two reads of a follow that found output: a chatty workload's lines arrive in batches this long. */
const BATCH_MS = 50;
/**
 * A follow wakes when the instance directory changes (`fs.watch`: a log file written, the exit
 * file appearing); it also looks this often in case the watch missed something (a wrapper killed
 * outright writes nothing). Without a watch (it could not be set up) it polls every
 * {@link BATCH_MS}.
 */
const FOLLOW_FALLBACK_MS = 1_000;
const READ_CHUNK = 64 * 1024;

/**
 * Reads an instance's log files; with `follow`, reads again whenever the instance's directory
 * changes (`fs.watch`, at most every {@link BATCH_MS}; every {@link FOLLOW_FALLBACK_MS} in any
 * case) until `isRunning()` says the instance has ended, then reads what is left. An idle
 * follow costs nothing between changes: it used to open, read and close both files and ask
 * `isRunning()` every 50 ms. Files carry no per-line time, so `at` is the read time and `since`
 * skips a whole file last written before it.
 */
export async function* readLogFiles(
  files: InstanceFiles,
  opts: {
    follow?: boolean;
    since?: number;
    signal?: AbortSignal;
    runtime: string;
    /** Settles when the instance exits (its starter's child exit event): the follow then ends without waiting a poll. */
    exited?: Promise<void>;
  },
  isRunning: () => Promise<boolean>,
): AsyncGenerator<LogChunk> {
  const reader = new LogReader(files);
  try {
    for (const stream of STREAMS) {
      let start = 0;
      if (opts.since !== undefined) {
        const info = await stat(files.log(stream)).catch(() => undefined);
        if (info && info.mtimeMs < opts.since) start = info.size;
      }
      reader.offsets.set(stream, start);
    }
    const wake = opts.follow ? new Wakeup(dirname(files.log('stdout')), opts.signal, opts.exited) : undefined;
    try {
      for (;;) {
        throwIfAborted(opts.signal, opts.runtime);
        wake?.clear();
        const running = opts.follow ? await isRunning() : false;
        let found = false;
        for (const stream of STREAMS) {
          const { data, bytes } = await reader.read(stream);
          if (bytes.length === 0) continue;
          found = true;
          yield { stream, data, bytes, at: new Date().toISOString() };
        }
        if (!running) return;
        const readAt = performance.now();
        await wake!.next(wake!.watching ? FOLLOW_FALLBACK_MS : BATCH_MS);
        // Output keeps coming: let it gather for a batch before the next read.
        const since = performance.now() - readAt;
        if (found && since < BATCH_MS) await sleep(BATCH_MS - since, opts.signal, opts.runtime);
      }
    } finally {
      wake?.close();
    }
  } finally {
    await reader.close();
  }
}

/** Reads each log file on from where it left off, through one open handle per file. */
class LogReader {
  readonly offsets = new Map<LogStream, number>();
  readonly #decoders = new Map<LogStream, StringDecoder>(STREAMS.map((s) => [s, new StringDecoder('utf8')]));
  readonly #handles = new Map<LogStream, FileHandle>();
  readonly #buffer = Buffer.alloc(READ_CHUNK);

  constructor(private readonly files: InstanceFiles) {}

  async read(stream: LogStream): Promise<{ data: string; bytes: Buffer }> {
    let handle = this.#handles.get(stream);
    if (!handle) {
      // Not written yet (the wrapper makes it): nothing to read this time.
      handle = await open(this.files.log(stream), 'r').catch(() => undefined);
      if (!handle) return { data: '', bytes: Buffer.alloc(0) };
      this.#handles.set(stream, handle);
    }
    const decoder = this.#decoders.get(stream)!;
    let text = '';
    const read: Buffer[] = [];
    for (;;) {
      const position = this.offsets.get(stream) ?? 0;
      const { bytesRead } = await handle.read(this.#buffer, 0, READ_CHUNK, position);
      if (bytesRead === 0) return { data: text, bytes: read.length === 1 ? read[0]! : Buffer.concat(read) };
      this.offsets.set(stream, position + bytesRead);
      const chunk = Buffer.from(this.#buffer.subarray(0, bytesRead));
      read.push(chunk);
      text += decoder.write(chunk);
    }
  }

  async close(): Promise<void> {
    const handles = [...this.#handles.values()];
    this.#handles.clear();
    await Promise.all(handles.map((h) => h.close().catch(() => undefined)));
  }
}

/**
 * What wakes a follow: a change in the instance's directory (`fs.watch`, inotify on Linux: a log
 * written, the exit file appearing), the instance's exit, the caller's abort, or the timeout of
 * {@link Wakeup.next}. Each source is subscribed once for the whole follow, not once per wait.
 */
class Wakeup {
  #pending = false;
  #wake: (() => void) | undefined;
  readonly #watcher: FSWatcher | undefined;
  readonly #signal: AbortSignal | undefined;

  constructor(dir: string, signal: AbortSignal | undefined, exited: Promise<void> | undefined) {
    this.#watcher = watchDir(dir, this.poke);
    this.#signal = signal;
    signal?.addEventListener('abort', this.poke, { once: true });
    exited?.then(this.poke, this.poke);
  }

  /** False when no watch could be set up (the caller then looks often). */
  get watching(): boolean {
    return this.#watcher !== undefined;
  }

  readonly poke = (): void => {
    this.#pending = true;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  };

  /** Forgets what woke it so far (the caller is about to read everything). */
  clear(): void {
    this.#pending = false;
  }

  /** Settles at the next wake-up, at once when one came since {@link clear}, or after `ms`. */
  next(ms: number): Promise<void> {
    if (this.#pending) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  close(): void {
    this.#signal?.removeEventListener('abort', this.poke);
    this.#watcher?.close();
    this.poke();
  }
}

/** Watches `dir` (unreferenced: it never keeps the process up); `undefined` when it cannot. */
function watchDir(dir: string, onChange: () => void): FSWatcher | undefined {
  try {
    const watcher = watch(dir, { persistent: false }, onChange);
    // A watch that breaks (the directory removed) leaves the fallback's looks.
    watcher.on('error', () => watcher.close());
    return watcher;
  } catch {
    return undefined;
  }
}
