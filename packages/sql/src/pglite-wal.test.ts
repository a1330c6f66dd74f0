import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openPglite } from './pglite.js';

describe("PGlite's WAL settings", () => {
  it('creates WAL segments without filling them with zeros, durability settings untouched', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'runt-pglite-wal-'));
    const db = await openPglite({ dataDir: join(dir, 'db'), upkeep: false });
    try {
      const settings = await db.query<{ name: string; setting: string }>(
        `select name, setting from pg_settings where name in ('wal_init_zero', 'fsync', 'synchronous_commit') order by name`,
      );
      expect(Object.fromEntries(settings.rows.map((r) => [r.name, r.setting]))).toEqual({
        fsync: 'on',
        synchronous_commit: 'on',
        wal_init_zero: 'off',
      });
      // A new segment: the one after the current is made when the WAL reaches it.
      const wal = join(dir, 'db', 'pg_wal');
      const before = new Set(readdirSync(wal).filter((f) => /^[0-9A-F]{24}$/.test(f)));
      await db.query('select pg_switch_wal()');
      await db.query('create table t (x int)');
      await db.query('insert into t values (1)');
      const created = readdirSync(wal).filter((f) => /^[0-9A-F]{24}$/.test(f) && !before.has(f));
      expect(created.length).toBeGreaterThan(0);
      for (const f of created) {
        const st = statSync(join(wal, f));
        expect(st.size).toBe(16 * 1024 * 1024);
        // Not zero-filled: only the blocks written since are allocated (a zero-filled one has all 32,768).
        expect(st.blocks).toBeLessThan(16 * 1024 * 2);
      }
      // A commit after the switch is read back after a restart (the WAL replayed from it).
      await db.close();
      const again = await openPglite({ dataDir: join(dir, 'db'), upkeep: false });
      try {
        expect((await again.query<{ x: number }>('select x from t')).rows).toEqual([{ x: 1 }]);
      } finally {
        await again.close();
      }
    } finally {
      await db.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
