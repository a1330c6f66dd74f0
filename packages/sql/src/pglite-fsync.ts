import fs from 'node:fs';
import { join } from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import { NodeFS } from '@electric-sql/pglite/nodefs';

/**
 * The start parameter that routes Postgres' WAL syncs through `fsync()` (which {@link SyncingNodeFS}
 * makes real) instead of `fdatasync()` (a no-op in PGlite's WebAssembly build that nothing outside
 * it can replace). See {@link SyncingNodeFS}.
 */
export const PGLITE_WAL_SYNC_PARAMS = ['-c', 'wal_sync_method=fsync'] as const;

/** The part of Emscripten's NODEFS this file touches (its stream operations and error mapping). */
interface NodeFsInternals {
  stream_ops: {
    fsync?: (stream: NodeFsStream) => number;
    write: (stream: NodeFsStream, ...rest: unknown[]) => number;
  };
}
interface NodeFsStream {
  /** The host file descriptor NODEFS opened for this stream. */
  nfd: number;
  node: { mode: number };
}

/** `S_IFDIR` of a mode (`stat`'s file type bits). */
const isDir = (mode: number) => (mode & 0o170000) === 0o040000;

/**
 * PGlite's Node file system (Emscripten's NODEFS, `@electric-sql/pglite/nodefs`) with Postgres'
 * syncs made real. In PGlite 0.5 neither reaches the disk: its `fdatasync()` returns 0 and
 * NODEFS has no `fsync` stream operation (so `fsync()` returns 0 too) — `strace -f -e
 * trace=fsync,fdatasync` of a PGlite on a data directory that commits, checkpoints and shuts
 * down shows none. Every commit was then acknowledged once in the host's page cache: it survived
 * a crash of the process, not of the machine (docs/reliability.md).
 *
 * This file system gives NODEFS an `fsync` (a host `fdatasync` of the stream's file, `fsync` of
 * a directory; a failed host sync or write stops the process: {@link stopOnHostError}), and {@link PGLITE_WAL_SYNC_PARAMS} sends the WAL's syncs there. Every
 * sync Postgres asks for then happens where Postgres asks for it, synchronously, before the call
 * into PGlite returns — so before any answer built on it:
 * - a synchronous commit that wrote WAL: one `fdatasync` of the WAL segment holding its commit
 *   record (Postgres' `XLogFlush`), one per transaction whatever its rows — a group commit of
 *   runt's batches is one sync; a read-only or asynchronous commit (`synchronous_commit = off`)
 *   syncs nothing;
 * - a segment finished: synced before it is closed; a new segment: its temporary file synced,
 *   renamed, then the file and `pg_wal` synced (`durable_rename`);
 * - a checkpoint: every data file written since the last one (Postgres' sync requests), the
 *   SLRUs (`pg_xact`, …) and `pg_control`, all before the old WAL segments are recycled (renamed,
 *   then `pg_wal` synced) — the checkpoint's order is Postgres', unchanged;
 * - a start after a crash: Postgres syncs the whole data directory first (`SyncDataDirectory`).
 *
 * A new data directory (PGlite copies its template cluster in without any sync) is synced
 * whole once by {@link syncDataDir} before `openPglite` returns.
 */
export class SyncingNodeFS extends NodeFS {
  override async init(pg: PGlite, opts: Parameters<NodeFS['init']>[1]): ReturnType<NodeFS['init']> {
    const out = await super.init(pg, opts);
    const preRun = out.emscriptenOpts.preRun ?? [];
    out.emscriptenOpts.preRun = [
      ...preRun,
      (mod) => {
        const nodefs = mod.NODEFS as unknown as NodeFsInternals;
        const ops = nodefs.stream_ops;
        // One object shared by every NODEFS stream (`node.stream_ops`), opened before or after.
        ops.fsync = (stream) => {
          try {
            if (isDir(stream.node.mode)) fs.fsyncSync(stream.nfd);
            else fs.fdatasyncSync(stream.nfd);
          } catch (e) {
            stopOnHostError(this.rootDir, 'a sync', e);
          }
          return 0;
        };
        const write = ops.write;
        ops.write = (stream, ...rest) => {
          try {
            return write(stream, ...rest);
          } catch (e) {
            return stopOnHostError(this.rootDir, 'a write', e);
          }
        };
      },
    ];
    return out;
  }
}

/** Emscripten's numbers of the errors a host write or sync of a file can meet. */
const EMSCRIPTEN_ERRNO: Record<number, string> = {
  8: 'EBADF',
  19: 'EDQUOT',
  22: 'EFBIG',
  28: 'EINVAL',
  29: 'EIO',
  51: 'ENOSPC',
  69: 'EROFS',
};

/**
 * A host write or sync of the data directory failed (EIO, ENOSPC, …): the process stops at once,
 * with one line on stderr and exit code 74 (`EX_IOERR`). Handed back to PGlite as an errno, the
 * failure left its backend spinning at 100 % CPU with the call never answered (Postgres' PANIC
 * has no process to end inside WebAssembly) — the control plane alive, silent and stuck. Nothing
 * is lost by stopping: what the failed call was for has not been answered, and the restart's
 * recovery replays the WAL on disk (and syncs the whole directory first), as Postgres does after
 * its own PANIC on a failed WAL sync.
 */
function stopOnHostError(dir: string, what: string, e: unknown): never {
  // a host error as Node raised it (`code`), or as NODEFS re-threw it (Emscripten's `errno`)
  const err = e as { code?: string; errno?: number; message?: string };
  const why =
    err.code ??
    (err.errno === undefined
      ? (err.message ?? String(e))
      : (EMSCRIPTEN_ERRNO[err.errno] ?? `errno ${err.errno}`));
  process.stderr.write(
    `runt: ${what} of the PGlite data directory ${dir} failed (${why}); stopping, a restart recovers from its WAL\n`,
  );
  process.exit(74);
}

/**
 * Syncs every file and directory under `dir`, and `dir`'s own entry in its parent (as initdb's
 * `--sync`): for a data directory PGlite has just created. ~1,000 files, 0.2–0.4 s once.
 */
export async function syncDataDir(dir: string): Promise<void> {
  const files: string[] = [];
  const dirs: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) files.push(p);
    }
    dirs.push(d); // after the directories in it
  };
  walk(dir);
  const sync = async (p: string) => {
    const h = await fs.promises.open(p, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  };
  // Files first (32 at a time, on libuv's threads: ~1,000 descriptors at once would hit a 1,024
  // open-file limit), then the directories holding their entries.
  for (let i = 0; i < files.length; i += 32) await Promise.all(files.slice(i, i + 32).map(sync));
  for (const d of [...dirs, join(dir, '..')]) await sync(d);
}
