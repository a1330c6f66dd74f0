import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';

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
});

/** What the agent keeps about one held run, so a restarted agent can pick it up again. */
export type RunState = z.infer<typeof runStateSchema>;

const SAFE_ID = /^[A-Za-z0-9_.-]{1,200}$/;

/**
 * Per-run state files (`<dir>/<run id>.json`, 0600 in a 0700 directory, written atomically by
 * temp file + rename). They hold the fencing token, so they are as private as the credential.
 *
 * @example
 * const store = new RunStateStore('/var/lib/runt/agent/runs');
 * await store.save({ run_id, runtime: 'process', runner_id, fencing_token: 3, next_seq: 1, log_chars: { stdout: 0, stderr: 0 }, ready: false, command_seq: 0 });
 * for (const s of await store.list()) console.log(s.run_id);
 */
export class RunStateStore {
  /** The directory is made (and its mode checked) once per store, not on every save. */
  #dirReady: Promise<void> | undefined;

  constructor(readonly dir: string) {}

  /** Writes (or replaces) one run's state. */
  async save(state: RunState): Promise<void> {
    const file = this.#file(state.run_id);
    await this.#ensureDir();
    const tmp = join(this.dir, `.${state.run_id}.${randomBytes(4).toString('hex')}.tmp`);
    try {
      const fh = await open(tmp, 'wx', 0o600).catch(async (e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
        this.#dirReady = undefined; // the directory went away under us: make it again
        await this.#ensureDir();
        return open(tmp, 'wx', 0o600);
      });
      try {
        await fh.writeFile(JSON.stringify(runStateSchema.parse(state)), 'utf8');
      } finally {
        await fh.close();
      }
      await rename(tmp, file);
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw e;
    }
  }

  /** One run's state; `undefined` when absent or unreadable. */
  async load(runId: string): Promise<RunState | undefined> {
    try {
      const parsed = runStateSchema.safeParse(JSON.parse(await readFile(this.#file(runId), 'utf8')));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  /** Every readable state file; corrupt ones are removed (they cannot be acted on). */
  async list(): Promise<RunState[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return [];
    }
    const out: RunState[] = [];
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      const state = await this.load(name.slice(0, -'.json'.length));
      if (state) out.push(state);
      else await rm(join(this.dir, name), { force: true });
    }
    return out;
  }

  /** Forgets a run (idempotent). */
  async remove(runId: string): Promise<void> {
    await rm(this.#file(runId), { force: true });
  }

  #file(runId: string): string {
    if (!SAFE_ID.test(runId)) throw new TypeError(`not a run id: ${runId}`);
    return join(this.dir, `${runId}.json`);
  }

  #ensureDir(): Promise<void> {
    this.#dirReady ??= (async () => {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      if (((await stat(this.dir)).mode & 0o077) !== 0) await chmod(this.dir, 0o700);
    })().catch((e: unknown) => {
      this.#dirReady = undefined;
      throw e;
    });
    return this.#dirReady;
  }
}
