import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { z } from 'zod';
import { WorkspaceError } from './errors.js';

export const workspaceStateSchema = z.enum(['stopped', 'running', 'error']);
export type WorkspaceState = z.infer<typeof workspaceStateSchema>;

export const workspaceRecordSchema = z.object({
  id: z.string(),
  name: z.string(),
  runtime: z.string(),
  sourcePath: z.string(),
  configPath: z.string().optional(),
  image: z.string().optional(),
  /** The runtime's instance id once created. */
  instanceId: z.string().optional(),
  state: workspaceStateSchema,
  /** What the runtime said about the instance when it was last changed (JSON). */
  runtimeInfo: z.record(z.string(), z.unknown()).optional(),
  /** Last error message when `state` is `error`. */
  error: z.string().optional(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type WorkspaceRecord = z.infer<typeof workspaceRecordSchema>;

const fileSchema = z.object({ version: z.literal(1), workspaces: z.array(workspaceRecordSchema) });
type WorkspacesFile = z.infer<typeof fileSchema>;

/**
 * The workspace registry: `workspaces.json` in the config dir. Every change runs under a
 * cross-process lock and is written to a temp file and renamed into place, so parallel CLI
 * commands never lose or corrupt an entry.
 *
 * @example
 * const store = new WorkspaceStore({ configDir: '/tmp/runt' });
 * await store.update((all) => { all.push(record); });
 */
export class WorkspaceStore {
  readonly file: string;

  constructor(readonly opts: { configDir: string }) {
    this.file = join(opts.configDir, 'workspaces.json');
  }

  /** Every workspace, as stored. */
  async list(): Promise<WorkspaceRecord[]> {
    return (await this.read()).workspaces;
  }

  /** A workspace by exact id or name. */
  async find(ref: string): Promise<WorkspaceRecord | undefined> {
    return (await this.list()).find((w) => w.id === ref || w.name === ref);
  }

  /** Like {@link find}, but a clear `not-found` error when there is none. */
  async get(ref: string): Promise<WorkspaceRecord> {
    const w = await this.find(ref);
    if (!w)
      throw new WorkspaceError('not-found', `no workspace named "${ref}" (runt workspace list shows them)`);
    return w;
  }

  /**
   * Reads, lets `change` edit the list in place, and writes it back, all under the lock.
   * Returns what `change` returns.
   */
  async update<T>(change: (workspaces: WorkspaceRecord[]) => T | Promise<T>): Promise<T> {
    await mkdir(this.opts.configDir, { recursive: true, mode: 0o700 });
    let release: () => Promise<void>;
    try {
      release = await lockfile.lock(this.opts.configDir, {
        lockfilePath: join(this.opts.configDir, 'workspaces.lock'),
        retries: { retries: 100, minTimeout: 20, maxTimeout: 200, randomize: true },
        stale: 30_000,
      });
    } catch (e) {
      throw new WorkspaceError(
        'locked',
        `another runt command holds the workspace lock in ${this.opts.configDir}`,
        { cause: e },
      );
    }
    try {
      const data = await this.read();
      const out = await change(data.workspaces);
      await this.write(data);
      return out;
    } finally {
      await release();
    }
  }

  private async read(): Promise<WorkspacesFile> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, workspaces: [] };
      throw e;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new WorkspaceError('state-corrupt', `${this.file} is not valid JSON; fix or remove it`);
    }
    const r = fileSchema.safeParse(parsed);
    if (!r.success)
      throw new WorkspaceError(
        'state-corrupt',
        `${this.file} is not a workspace registry: ${r.error.issues[0]?.message}`,
      );
    return r.data;
  }

  private async write(data: WorkspacesFile): Promise<void> {
    const tmp = `${this.file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await writeFile(tmp, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600 });
      await rename(tmp, this.file);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }
}
