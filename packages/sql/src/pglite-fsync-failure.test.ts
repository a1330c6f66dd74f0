import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

// The built package (tests run after `build`), in a child process: a failed host sync or write
// ends that process, which is the behaviour under test.
const SQL = fileURLToPath(new URL('../dist/index.js', import.meta.url));

/**
 * A child that opens PGlite on `dataDir`, commits one row, then makes the host's `fs.<call>`
 * fail with EIO and commits another: what it printed and how it ended.
 */
function commitAfterHostFailure(dataDir: string, call: 'fdatasyncSync' | 'writeSync') {
  const script = `
    import fs from 'node:fs';
    const { openPglite } = await import(${JSON.stringify(SQL)});
    const db = await openPglite({ dataDir: ${JSON.stringify(dataDir)}, upkeep: false });
    await db.query('create table t (x int)');
    await db.query('insert into t values (1)');
    console.log('first committed');
    const real = fs.${call};
    fs.${call} = (fd, ...rest) => {
      if (fs.readlinkSync('/proc/self/fd/' + fd).includes('pg_wal')) {
        throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO', errno: -5 });
      }
      return real(fd, ...rest);
    };
    await db.query('insert into t values (2)');
    console.log('second answered');
  `;
  return spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 60_000,
  });
}

describe('a failed host sync or write of a PGlite data directory stops the process', () => {
  const dir = fs.mkdtempSync(join(tmpdir(), 'runt-pglite-fail-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it.each(['fdatasyncSync', 'writeSync'] as const)(
    'fs.%s failing with EIO: exit 74 with one line, the commit never answered, and the data there at the next start',
    (call) => {
      const dataDir = join(dir, call);
      const child = commitAfterHostFailure(dataDir, call);
      // before: the child spun at 100 % CPU with the insert never settled, until the timeout
      expect(child.error).toBeUndefined();
      expect(child.status).toBe(74);
      expect(child.stdout.trim()).toBe('first committed');
      const lines = child.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(
        /^runt: a (sync|write) of the PGlite data directory .* failed \(EIO\); stopping/,
      );
      // the first commit was acknowledged, so it is there after the restart's recovery
      const after = spawnSync(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `const { openPglite } = await import(${JSON.stringify(SQL)});
           const db = await openPglite({ dataDir: ${JSON.stringify(dataDir)}, upkeep: false });
           console.log(JSON.stringify((await db.query('select x from t order by x')).rows));
           await db.close();`,
        ],
        { encoding: 'utf8', timeout: 60_000 },
      );
      expect(after.status, after.stderr).toBe(0);
      expect(JSON.parse(after.stdout.trim())[0]).toEqual({ x: 1 });
    },
    120_000,
  );
});
