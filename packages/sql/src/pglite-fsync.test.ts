import fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openPglite } from './pglite.js';
import type { Database } from './sql.js';

// Every host sync PGlite's file system asks for, as [kind, path in the data directory], in order
// (the descriptor resolved when the sync is called, so before it can be closed or reused).
const syncs: Array<[kind: 'fdatasync' | 'fsync', path: string]> = [];
let root = '';
const where = (fd: number) => relative(root, fs.readlinkSync(`/proc/self/fd/${fd}`));
const fdatasync = fs.fdatasyncSync.bind(fs);
const fsync = fs.fsyncSync.bind(fs);
const taken = () => syncs.splice(0);

describe("PGlite's syncs reach the disk (SyncingNodeFS)", () => {
  let dir = '';
  let db: Database;
  let openedAtStart: string[] = [];
  beforeAll(async () => {
    dir = fs.mkdtempSync(join(tmpdir(), 'runt-pglite-fsync-'));
    root = join(dir, 'db');
    vi.spyOn(fs, 'fdatasyncSync').mockImplementation((fd) => {
      syncs.push(['fdatasync', where(fd)]);
      fdatasync(fd);
    });
    vi.spyOn(fs, 'fsyncSync').mockImplementation((fd) => {
      syncs.push(['fsync', where(fd)]);
      fsync(fd);
    });
    const open = fs.promises.open.bind(fs.promises);
    const opened: string[] = [];
    vi.spyOn(fs.promises, 'open').mockImplementation((path, ...rest) => {
      opened.push(String(path));
      return open(path, ...rest);
    });
    db = await openPglite({ dataDir: root, upkeep: false });
    openedAtStart = opened.map((p) => relative(root, p));
    await db.query('create table t (x int)');
    taken();
  });
  afterAll(async () => {
    vi.restoreAllMocks();
    await db?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const walFile = async () =>
    `pg_wal/${(await db.query<{ f: string }>('select pg_walfile_name(pg_current_wal_lsn()) as f')).rows[0]!.f}`;

  it('syncs a new data directory whole before it is opened', () => {
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(d, e.name));
        else if (e.isFile()) files.push(relative(root, join(d, e.name)));
      }
    };
    walk(root);
    // Every file there now but the ones the table's creation just made.
    const table = new Set(files.filter((f) => !openedAtStart.includes(f)));
    expect(table.size).toBeLessThan(10);
    expect(openedAtStart).toEqual(expect.arrayContaining(['PG_VERSION', 'global/pg_control', 'pg_wal', '']));
    expect(openedAtStart.length).toBeGreaterThan(500);
  });

  it('fdatasyncs the WAL segment holding a commit record before the commit returns, once per transaction', async () => {
    await db.query('insert into t values (1)');
    const one = taken();
    expect(one).toEqual([['fdatasync', await walFile()]]);
    // 100 rows in one transaction (a group commit): one sync.
    await db.transaction(async (tx) => {
      for (let i = 0; i < 100; i++) await tx.query('insert into t values ($1)', [i]);
    });
    expect(taken()).toEqual([['fdatasync', await walFile()]]);
    taken();
  });

  it('syncs nothing for a read or an asynchronous commit', async () => {
    await db.query('select count(*) from t');
    await db.transaction(async (tx) => {
      await tx.query(`select set_config('synchronous_commit', 'off', true)`);
      await tx.query('insert into t values (2)');
    });
    expect(taken()).toEqual([]);
  });

  it('syncs a new WAL segment and its directory entry, and data files and pg_control at a checkpoint', async () => {
    await db.query('select pg_switch_wal()');
    await db.query('insert into t values (3)');
    const segment = taken();
    const wal = await walFile();
    // The new segment made under a temporary name, synced, renamed, synced with pg_wal.
    expect(segment).toEqual(expect.arrayContaining([['fsync', 'pg_wal']]));
    expect(segment[segment.length - 1]).toEqual(['fdatasync', wal]);
    taken();
    const table = (await db.query<{ p: string }>(`select pg_relation_filepath('t') as p`)).rows[0]!.p;
    await db.query('checkpoint');
    const checkpoint = taken();
    const at = (s: [string, string]) => checkpoint.findIndex((c) => c[0] === s[0] && c[1] === s[1]);
    expect(at(['fdatasync', table])).toBeGreaterThanOrEqual(0);
    expect(at(['fdatasync', 'global/pg_control'])).toBeGreaterThan(at(['fdatasync', table]));
  });
});
