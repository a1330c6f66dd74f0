import { chmod, mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';
import { z } from 'zod';
import { traceMark, tracing } from './trace.js';

const runStateSchema = z.object({
  run_id: z.string().min(1),
  runtime: z.string().min(1),
  runner_id: z.string().min(1),
  fencing_token: z.number().int(),
  next_seq: z.number().int().min(1),
  /** Characters of each output stream already sent as events: on re-adoption the replayed prefix is skipped. */
  log_chars: z.object({ stdout: z.number().int().min(0), stderr: z.number().int().min(0) }),
  ready: z.boolean(),
  instance_id: z.string().optional(),
  /** The spec's `ready_when.log_line`, so an adopted run still reports `running` on it. */
  ready_when: z.string().optional(),
  command_seq: z.number().int().min(0).default(0),
  /** The run's `timeout_s`, so an adopted run is still stopped at it. */
  timeout_s: z.number().int().min(1).optional(),
  /** When the workload was created (epoch ms; it starts right after): where `timeout_s` counts from. */
  started_at_ms: z.number().optional(),
  /**
   * The stop this agent began (a cancel, or the run's timeout), saved before the workload gets
   * the polite signal: an agent killed before reporting it leaves the run to its next start,
   * which reports it as that stop (`cancelled` / `timeout`), not as the signal's exit code.
   */
  stopping: z.object({ timeout: z.boolean(), message: z.string() }).optional(),
  /** The names of the run's secret env entries (never their values): a restarted agent fetches them again to keep masking. */
  secret_env_names: z.array(z.string()).optional(),
});

/** What the agent keeps about one held run, so a restarted agent can pick it up again. */
export type RunState = z.infer<typeof runStateSchema>;

const SAFE_ID = /^[A-Za-z0-9_.-]{1,200}$/;

export interface RunStateStoreOptions {
  /**
   * Records saved within this window after the first one go out in one write and one fsync
   * (default 0). 0 is the end of the current iteration of the event loop (`setImmediate`):
   * every save made by what that iteration's I/O completed goes in one write without a timer.
   * Records saved while a batch is being written go in the next batch (group commit). Default 0
   * since claim on offer: the runs of one `offer-claimed` message reach their saves in one turn,
   * so a window of 2 ms only held their one fsync back (2.84 ms p50 of a ~24 ms slot cycle in
   * the Postgres drain; issue 9, docs/benchmarks.md).
   */
  windowMs?: number;
  /** fsync (fdatasync) each batch before its saves resolve (default true). */
  sync?: boolean;
  /**
   * Records that need not be durable before the caller goes on (`note`, `remove`) wait at most
   * this long for a batch of durable saves to ride with (default 100 ms); a batch of only such
   * records is written without an fsync.
   */
  lazyMs?: number;
  /** Rewrite the journal with only the live states once it has grown this much since the last rewrite (default 1 MiB). */
  compactBytes?: number;
  /**
   * A directory of per-run `<run id>.json` state files (what agents wrote before the journal):
   * read once when the journal is opened, written into it, then removed. So an agent upgraded
   * while it held runs still re-adopts them.
   */
  legacyDir?: string;
}

type Waiter = { resolve: () => void; reject: (e: unknown) => void };

/** The timer armed for the pending records: a durable save's window, or the lazy records' wait. */
type Due = 'window' | 'lazy';

/**
 * The agent's one journal of its held runs (`<state dir>/agent/journal`, 0600 in a 0700
 * directory): an append-only file of records, one a line — `{"put":<state>}` or
 * `{"del":"<run id>"}`, each followed by a space and its CRC-32 in hex. Saves are grouped:
 * every record of a short window (`windowMs`) goes out in one `write` and one `fdatasync`, and
 * a save resolves once its batch is durable (a run whose state is saved twice in a window costs
 * one record). Records a restart can do without — a run's removal once it ended, its output
 * position (`note`) — are not synced on their own: they ride with the next batch of durable saves
 * (or go out after `lazyMs`, unsynced), so a run costs one synced write at its start (issue 9:
 * the journal was the agent's top CPU item at four records and two serial fsyncs per run). A
 * removal lost to a crash leaves an ended run in the journal, which the next start asks the
 * control plane about (refused: forgotten). Opening replays it: a record whose CRC does not match — the torn last record of an
 * agent killed mid-write — is ignored, and the live states are written to a fresh file renamed
 * over the journal (so appends never follow a torn line). The same rewrite compacts the journal
 * when it has grown by `compactBytes`. The states hold fencing tokens: the file is as private as
 * the credential.
 *
 * @example
 * const store = new RunStateStore('/var/lib/runt/agent/journal');
 * await store.save({ run_id, runtime: 'process', runner_id, fencing_token: 3, next_seq: 1, log_chars: { stdout: 0, stderr: 0 }, ready: false, command_seq: 0 });
 * for (const s of await store.list()) console.log(s.run_id);
 * await store.close();
 */
export class RunStateStore {
  readonly #opts: Required<Omit<RunStateStoreOptions, 'legacyDir'>> & RunStateStoreOptions;
  /** The live states (the journal replayed plus every save since): what `load`/`list` answer. */
  readonly #live = new Map<string, RunState>();
  /** Records not written yet, by run id (`null`: removed): a later save of a run replaces its record. */
  #pending = new Map<string, RunState | null>();
  #waiters: Waiter[] = [];
  #opened: Promise<void> | undefined;
  #fh: FileHandle | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** The end-of-iteration window (`windowMs` 0), instead of `#timer`. */
  #immediate: NodeJS.Immediate | undefined;
  #due: Due | undefined;
  #writing: Promise<void> | undefined;
  /** Bytes appended since the last rewrite. */
  #grown = 0;
  /** A write failed: the file may end in a torn record, so the next batch rewrites it whole. */
  #mustRewrite = false;
  readonly #stats = { batches: 0, records: 0, syncs: 0, rewrites: 0 };

  constructor(
    readonly file: string,
    opts: RunStateStoreOptions = {},
  ) {
    this.#opts = { windowMs: 0, sync: true, compactBytes: 1024 * 1024, lazyMs: 100, ...opts };
  }

  /**
   * Appended batches (one write each), the records they carried, the batches synced (those
   * with a durable save), and whole-file rewrites (opening, compaction).
   */
  get stats(): { batches: number; records: number; syncs: number; rewrites: number } {
    return { ...this.#stats };
  }

  /** Writes (or replaces) one run's state; resolves once it is in the journal (and synced). */
  async save(state: RunState): Promise<void> {
    checkId(state.run_id);
    await this.#open();
    this.#live.set(state.run_id, state);
    return this.#enqueue(state.run_id, state, true);
  }

  /**
   * Replaces one run's state where losing it to a crash costs only work the next start redoes
   * (a run's output position: output sent again, which the control plane takes once): the state
   * is what `load`/`list` answer at once, and goes out with the next batch of durable saves, or
   * after `lazyMs` unsynced. Resolves once queued.
   */
  async note(state: RunState): Promise<void> {
    checkId(state.run_id);
    await this.#open();
    this.#live.set(state.run_id, state);
    void this.#enqueue(state.run_id, state, false);
  }

  /** One run's state; `undefined` when absent. */
  async load(runId: string): Promise<RunState | undefined> {
    await this.#open();
    return this.#live.get(runId);
  }

  /** Every live state (the journal's last word on each run). */
  async list(): Promise<RunState[]> {
    await this.#open();
    return [...this.#live.values()];
  }

  /**
   * Forgets a run (idempotent); resolves once queued. The removal goes out as `note`'s records
   * do (with the next durable batch, or after `lazyMs` unsynced): one lost to a crash leaves a
   * run the next start asks the control plane about, and forgets once refused.
   */
  async remove(runId: string): Promise<void> {
    checkId(runId);
    await this.#open();
    if (!this.#live.delete(runId) && !this.#pending.has(runId)) return;
    void this.#enqueue(runId, null, false);
  }

  /** Writes what is pending and closes the file. The store can be opened again by a later call. */
  async close(): Promise<void> {
    if (!this.#opened) return;
    await this.#opened.catch(() => undefined);
    this.#disarm();
    while (this.#writing || this.#pending.size > 0) await (this.#writing ?? this.#kick());
    await this.#fh?.close();
    this.#fh = undefined;
    this.#opened = undefined;
  }

  /** Queues a record; a durable one resolves once its batch is synced, a lazy one at once. */
  #enqueue(runId: string, record: RunState | null, durable: boolean): Promise<void> {
    this.#pending.set(runId, record);
    let done: Promise<void> | undefined;
    if (durable) done = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    if (!this.#writing) this.#arm();
    return done ?? Promise.resolve();
  }

  /** Arms the timer the pending records need: a durable save's window, else the lazy wait. */
  #arm(): void {
    if (this.#pending.size === 0) return;
    const due: Due = this.#waiters.length > 0 ? 'window' : 'lazy';
    if (this.#due !== undefined && (this.#due === due || this.#due === 'window')) return;
    this.#disarm();
    this.#due = due;
    if (due === 'window' && this.#opts.windowMs <= 0) {
      this.#immediate = setImmediate(() => void this.#kick());
      return;
    }
    this.#timer = setTimeout(
      () => void this.#kick(),
      due === 'window' ? this.#opts.windowMs : this.#opts.lazyMs,
    );
    // Lazy records alone do not hold the process up (close writes them).
    if (due === 'lazy') this.#timer.unref();
  }

  #disarm(): void {
    clearTimeout(this.#timer);
    clearImmediate(this.#immediate);
    this.#timer = undefined;
    this.#immediate = undefined;
    this.#due = undefined;
  }

  #kick(): Promise<void> {
    this.#disarm();
    this.#writing ??= this.#writeBatches().finally(() => {
      this.#writing = undefined;
      // Saved between the last batch and now: the next window takes them.
      this.#arm();
    });
    return this.#writing;
  }

  /**
   * Writes what is pending, then batches while durable saves wait: those that arrive during a
   * write go in the next one; lazy records alone are left to the next batch or the lazy wait.
   */
  async #writeBatches(): Promise<void> {
    for (let first = true; this.#pending.size > 0 && (first || this.#waiters.length > 0); first = false) {
      const batch = this.#pending;
      const waiters = this.#waiters;
      this.#pending = new Map();
      this.#waiters = [];
      try {
        if (this.#mustRewrite || this.#grown >= this.#opts.compactBytes) {
          await this.#rewrite();
        } else {
          let text = '';
          for (const [runId, state] of batch) text += state ? record({ put: state }) : record({ del: runId });
          const buf = Buffer.from(text, 'utf8');
          // Marked first: a write that fails half-way leaves a torn line that no append may follow.
          this.#mustRewrite = true;
          if (tracing) traceMark('agent.jwrite', [...batch.keys()]);
          await this.#fh!.write(buf, 0, buf.length);
          // Only a batch someone waits on is synced (that sync covers the lazy records before it).
          if (this.#opts.sync && waiters.length > 0) {
            await this.#fh!.datasync();
            if (tracing) traceMark('agent.jsynced', [...batch.keys()]);
            this.#stats.syncs++;
          }
          this.#mustRewrite = false;
          this.#grown += buf.length;
          this.#stats.batches++;
          this.#stats.records += batch.size;
        }
        for (const w of waiters) w.resolve();
      } catch (e) {
        // The next batch rewrites the file from the live states, these records included.
        this.#mustRewrite = true;
        for (const w of waiters) w.reject(e);
      }
    }
  }

  /**
   * Writes the live states to `<file>.tmp`, syncs it, renames it over the journal, syncs the
   * directory and appends to the new file from then on.
   */
  async #rewrite(): Promise<void> {
    const tmp = `${this.file}.tmp`;
    let text = '';
    for (const state of this.#live.values()) text += record({ put: state });
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(text, 'utf8');
      if (this.#opts.sync) await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.file);
    if (this.#opts.sync) await syncDir(dirname(this.file));
    await this.#fh?.close().catch(() => undefined);
    this.#fh = await open(this.file, 'a', 0o600);
    this.#grown = 0;
    this.#mustRewrite = false;
    this.#stats.rewrites++;
  }

  #open(): Promise<void> {
    this.#opened ??= this.#replay().catch((e: unknown) => {
      this.#opened = undefined;
      throw e;
    });
    return this.#opened;
  }

  /** Reads the journal (and any legacy state files) into `#live`, then rewrites it compacted. */
  async #replay(): Promise<void> {
    const dir = dirname(this.file);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    if (((await stat(dir)).mode & 0o077) !== 0) await chmod(dir, 0o700);
    this.#live.clear();
    let text = '';
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    for (const line of text.split('\n')) {
      const rec = parseRecord(line);
      if (!rec) continue;
      if ('del' in rec) this.#live.delete(rec.del);
      else this.#live.set(rec.put.run_id, rec.put);
    }
    const legacy = this.#opts.legacyDir ? await readLegacy(this.#opts.legacyDir) : [];
    for (const state of legacy) if (!this.#live.has(state.run_id)) this.#live.set(state.run_id, state);
    // Always start from a clean file: a torn tail is dropped and the journal is compacted.
    await this.#rewrite();
    if (this.#opts.legacyDir)
      await rm(this.#opts.legacyDir, { recursive: true, force: true }).catch(() => undefined);
  }
}

function checkId(runId: string): void {
  if (!SAFE_ID.test(runId)) throw new TypeError(`not a run id: ${runId}`);
}

type JournalRecord = { put: RunState } | { del: string };

/** One journal line: the record's JSON, a space, its CRC-32 (hex), a newline. */
function record(rec: JournalRecord): string {
  const json = JSON.stringify(rec);
  return `${json} ${crc32(json).toString(16)}\n`;
}

const recordSchema = z.union([
  z.object({ put: runStateSchema }).strict(),
  z.object({ del: z.string().regex(SAFE_ID) }).strict(),
]);

/** A journal line's record; `undefined` for a torn or corrupt line (bad CRC, JSON or shape). */
function parseRecord(line: string): JournalRecord | undefined {
  const space = line.lastIndexOf(' ');
  if (space <= 0) return undefined;
  const json = line.slice(0, space);
  if (crc32(json).toString(16) !== line.slice(space + 1)) return undefined;
  try {
    const parsed = recordSchema.safeParse(JSON.parse(json));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** The readable `<run id>.json` files of a pre-journal state directory. */
async function readLegacy(dir: string): Promise<RunState[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: RunState[] = [];
  for (const name of names) {
    if (!name.endsWith('.json') || !SAFE_ID.test(name.slice(0, -'.json'.length))) continue;
    try {
      const parsed = runStateSchema.safeParse(JSON.parse(await readFile(join(dir, name), 'utf8')));
      if (parsed.success) out.push(parsed.data);
    } catch {
      // unreadable: nothing to act on
    }
  }
  return out;
}

/** fsyncs a directory, so a rename in it survives a crash of the machine. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
