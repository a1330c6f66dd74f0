import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { spawn } from '@lydell/node-pty';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, startControlPlane, type RunningControlPlane } from '@runt/control-plane';
import { ControlPlaneClient } from '@runt/protocol';
import { createTestDatabase, type TestDatabase } from '@runt/sql/testing';
import { mintToken } from '@runt/transport-auth';
import { RUNT_BIN, runt } from './cli.js';

const ESC = '\u001b';
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;
const AGO = /^\d+[smhd] ago$/;

/** The cell under `column` of the first row whose first cell is `first` (cells: 2+ spaces apart). */
function cell(table: string, first: string, column: string): string | undefined {
  const [head, ...rows] = table.split('\n');
  const at = head!.indexOf(column);
  const row = rows.find((r) => r.startsWith(`${first} `));
  return row
    ?.slice(at)
    .split(/\s{2,}/)[0]
    ?.trim();
}

// Every table the CLI prints goes through tableLines: a header row, relative times (ISO in
// --json), the status coloured on a terminal or with FORCE_COLOR, plain when piped or with
// NO_COLOR (issue 12).
describe('tables: header rows, relative times, status colour', () => {
  let t: TestDatabase;
  let cp: RunningControlPlane;
  const adminToken = mintToken('admin');
  const root = mkdtempSync(join(tmpdir(), 'runt-tables-'));
  let env: Record<string, string>;

  beforeAll(async () => {
    t = await createTestDatabase('pglite');
    cp = await startControlPlane(
      loadConfig({}, { host: '127.0.0.1', port: 0, adminToken, dataDir: join(root, 'cp') }),
      { db: t.db, logDestination: new Writable({ write: (_c, _e, cb) => cb() }) },
    );
    env = { RUNT_CLOUD_URL: cp.url, RUNT_ADMIN_TOKEN: adminToken, RUNT_CONFIG_DIR: join(root, 'operator') };
    const { pairing } = await new ControlPlaneClient({ url: cp.url, token: adminToken }).mintPairingCode({
      ttl_seconds: 600,
    });
    const paired = await runt(
      ['workstation', 'connect', cp.url, '--code', pairing.code, '--name', 'tbl-box'],
      {
        RUNT_CONFIG_DIR: join(root, 'box'),
      },
    );
    expect(paired.exitCode, paired.stderr).toBe(0);
  }, 300_000);
  afterAll(async () => {
    await cp?.close();
    await t?.dispose();
  });

  it('workstation status: header row, LAST SEEN relative (ISO in --json), coloured only on a TTY or FORCE_COLOR', async () => {
    const piped = await runt(['workstation', 'status'], env);
    expect(piped.exitCode, piped.stderr).toBe(0);
    expect(piped.stdout.split('\n')[0]).toMatch(/^NAME\s+STATUS\s+AGENT\s+RUNTIMES\s+LAST SEEN$/);
    expect(cell(piped.stdout, 'tbl-box', 'STATUS')).toBe('online');
    expect(cell(piped.stdout, 'tbl-box', 'LAST SEEN')).toMatch(AGO);
    expect(piped.stdout).not.toContain(ESC);
    const json = JSON.parse((await runt(['workstation', 'status', '--json'], env)).stdout);
    expect(json.workstations[0].last_seen_at).toMatch(ISO);

    const forced = await runt(['workstation', 'status'], { ...env, FORCE_COLOR: '1' });
    expect(forced.stdout).toContain(`${ESC}[32monline`);

    const onPty = (extra: Record<string, string>) =>
      new Promise<string>((resolve) => {
        const base = Object.fromEntries(
          Object.entries(process.env).filter(
            (e): e is [string, string] => e[1] !== undefined && e[0] !== 'NO_COLOR' && e[0] !== 'FORCE_COLOR',
          ),
        );
        const pty = spawn('node', [RUNT_BIN, 'workstation', 'status'], {
          cols: 200,
          rows: 40,
          env: { ...base, ...env, TERM: 'xterm', ...extra },
        });
        let screen = '';
        pty.onData((d) => (screen += d));
        pty.onExit(() => resolve(screen));
      });
    expect(await onPty({})).toContain(`${ESC}[32monline`);
    const plain = await onPty({ NO_COLOR: '1' });
    expect(plain).toContain('online');
    expect(plain).not.toContain(`${ESC}[3`);
  }, 300_000);

  it('admin credentials: header row, STATUS coloured with FORCE_COLOR, times relative (ISO in --json)', async () => {
    const piped = await runt(['admin', 'credentials'], env);
    expect(piped.exitCode, piped.stderr).toBe(0);
    expect(piped.stdout.split('\n')[0]).toMatch(/^ID\s+KIND\s+NAME\s+STATUS\s+CREATED\s+LAST USED$/);
    const json = JSON.parse((await runt(['admin', 'credentials', '--json'], env)).stdout);
    const box = json.credentials.find((c: { display_name: string | null }) => c.display_name === 'tbl-box');
    expect(box.created_at).toMatch(ISO);
    expect(cell(piped.stdout, box.id, 'STATUS')).toBe('active');
    expect(cell(piped.stdout, box.id, 'CREATED')).toMatch(AGO);
    expect(piped.stdout).not.toContain(ESC);
    const forced = await runt(['admin', 'credentials'], { ...env, FORCE_COLOR: '1' });
    expect(forced.stdout).toContain(`${ESC}[32mactive`);
    expect((await runt(['admin', 'credentials'], { ...env, NO_COLOR: '1' })).stdout).not.toContain(ESC);
  }, 300_000);

  it('run show: status coloured with FORCE_COLOR, times relative with the ISO time beside them', async () => {
    const admin = new ControlPlaneClient({ url: cp.url, token: adminToken });
    const { run } = await admin.submitRun({ runtime: 'nosuch', command: ['true'] });
    await admin.cancelRun(run.id);
    const piped = await runt(['run', 'show', run.id], env);
    expect(piped.stdout).toMatch(/^status\s+cancelled$/m);
    expect(piped.stdout).toMatch(
      new RegExp(`^created\\s+\\d+[smhd] ago \\(${run.created_at.replace(/[.]/g, '\\.')}\\)$`, 'm'),
    );
    expect(piped.stdout).not.toContain(ESC);
    const forced = await runt(['run', 'show', run.id], { ...env, FORCE_COLOR: '1' });
    expect(forced.stdout).toMatch(new RegExp(`^status\\s+${ESC}\\[33mcancelled${ESC}\\[0m$`, 'm'));
  }, 300_000);

  it('workspace list: header row, STATE coloured with FORCE_COLOR, CREATED relative (ISO in --json)', async () => {
    const sources = join(root, 'tbl-src');
    mkdirSync(sources);
    writeFileSync(join(sources, 'a.txt'), 'a\n');
    const local = { RUNT_CONFIG_DIR: join(root, 'ws-config') };
    const init = await runt(
      ['workspace', 'init', sources, '--runtime', 'process', '--name', 'tbl-ws'],
      local,
    );
    expect(init.exitCode, init.stderr).toBe(0);
    try {
      const piped = await runt(['workspace', 'list'], local);
      expect(piped.stdout.split('\n')[0]).toMatch(/^NAME\s+RUNTIME\s+STATE\s+SOURCES\s+CREATED$/);
      expect(cell(piped.stdout, 'tbl-ws', 'STATE')).toBe('running');
      expect(cell(piped.stdout, 'tbl-ws', 'SOURCES')).toBe(sources);
      expect(cell(piped.stdout, 'tbl-ws', 'CREATED')).toMatch(AGO);
      expect(piped.stdout).not.toContain(ESC);
      const forced = await runt(['workspace', 'list', '--json'], { ...local, FORCE_COLOR: '1' });
      expect(JSON.parse(forced.stdout).workspaces[0].created_at).toMatch(ISO);
      expect((await runt(['workspace', 'list'], { ...local, FORCE_COLOR: '1' })).stdout).toContain(
        `${ESC}[36mrunning`,
      );
    } finally {
      await runt(['workspace', 'remove', 'tbl-ws', '--force'], local);
    }
  }, 300_000);
});
