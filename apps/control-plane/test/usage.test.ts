import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { ENV_HELP } from '../src/usage.js';

const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

describe('runt-control-plane --help', () => {
  it('prints its usage and every environment variable, exits 0 and starts nothing', async () => {
    for (const flag of ['--help', '-h']) {
      const r = await execa('node', [BIN, flag], {
        reject: false,
        timeout: 30_000,
        env: { RUNT_DATA_DIR: '/nonexistent/never-created' },
      });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^Usage: runt-control-plane/);
      for (const [name] of ENV_HELP) expect(r.stdout).toContain(name);
      expect(r.stderr).not.toContain('listening');
    }
  });

  it('lists every variable loadConfig reads', () => {
    const source = readFileSync(fileURLToPath(new URL('../src/config.ts', import.meta.url)), 'utf8');
    const read = [...source.matchAll(/v\('(\w+)'\)/g)].map((m) => m[1]);
    expect(read.length).toBeGreaterThan(10);
    expect(read.filter((name) => !ENV_HELP.some(([n]) => n === name))).toEqual([]);
  });

  it('refuses an unknown argument in one line, exit 2', async () => {
    const r = await execa('node', [BIN, '--port', '9'], { reject: false, timeout: 30_000 });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim()).toBe(
      'runt-control-plane: unknown argument --port (it is configured by environment variables; see --help)',
    );
  });
});
