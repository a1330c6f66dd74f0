import { mkdtempSync, readFileSync, statSync, readdirSync } from 'node:fs';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, startControlPlane, type RunningControlPlane } from '@runt/control-plane';
import { createTestDatabase, TEST_BACKENDS, type TestDatabase } from '@runt/sql/testing';
import { mintToken } from '@runt/transport-auth';
import { hostname } from 'node:os';
import { spawn } from '@lydell/node-pty';
import { RUNT_BIN, runt } from './cli.js';

const REJECTED = 'pairing code is invalid, expired, or already used';

describe.each(TEST_BACKENDS)('runt workstation connect end to end on %s', (backend) => {
  let t: TestDatabase;
  let cp: RunningControlPlane;
  const logs: string[] = [];
  const adminToken = mintToken('admin');
  const configDir = join(mkdtempSync(join(tmpdir(), 'runt-cli-')), 'config');
  const env = { RUNT_CONFIG_DIR: configDir };
  const admin = { RUNT_ADMIN_TOKEN: adminToken };

  beforeAll(async () => {
    t = await createTestDatabase(backend);
    const sink = new Writable({ write: (c, _e, cb) => (logs.push(String(c)), cb()) });
    cp = await startControlPlane(
      loadConfig(
        {},
        { host: '127.0.0.1', port: 0, adminToken, dataDir: mkdtempSync(join(tmpdir(), 'runt-cp-')) },
      ),
      {
        db: t.db,
        logDestination: sink,
        pairingLimits: { perAddress: { max: 6, windowMs: 60_000 }, overall: { max: 1000, windowMs: 60_000 } },
      },
    );
  });
  afterAll(async () => {
    await cp?.close();
    await t?.dispose();
  });

  async function mintCode(): Promise<string> {
    const r = await runt(['admin', 'pairing-code', '--url', cp.url, '--json'], admin);
    expect(r.exitCode, r.stderr).toBe(0);
    return JSON.parse(r.stdout).pairing.code;
  }

  let code = '';
  let token = '';

  it('admin pairing-code prints the one-line connect command', async () => {
    const r = await runt(['admin', 'pairing-code', '--url', cp.url], admin);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.trim()).toMatch(
      new RegExp(`^npx @runt/cli workstation connect ${cp.url} --code [2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{4}$`),
    );
    code = r.stdout.trim().split(' ').at(-1)!;
  });

  it('connect pairs, stores a 0600 credential with every field, and registers listening:false', async () => {
    const r = await runt(['workstation', 'connect', cp.url, '--code', code, '--name', 'e2e-box'], env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain('Paired as e2e-box');
    expect(r.stdout).toContain('runt workstation run --runtime');
    const file = join(configDir, 'workstation.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(configDir).mode & 0o777).toBe(0o700);
    expect(readdirSync(configDir)).toEqual(['workstation.json']);
    const cred = JSON.parse(readFileSync(file, 'utf8'));
    expect(cred).toEqual({
      cloud_url: cp.url,
      token: expect.stringMatching(/^rnt_ws_[A-Za-z0-9_-]{43}$/),
      credential_id: expect.any(String),
      workstation_id: expect.any(String),
      display_name: 'e2e-box',
      connected_at: expect.any(String),
    });
    token = cred.token;
    const ws = await cp.workstations.get(cred.workstation_id);
    expect(ws).toMatchObject({ display_name: 'e2e-box', listening: false, status: 'online' });
  });

  it('status --json lists the fleet with this machine in it', async () => {
    const r = await runt(['workstation', 'status', '--json'], env);
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.workstations.map((w: { display_name: string }) => w.display_name)).toContain('e2e-box');
    const human = await runt(['workstation', 'status'], env);
    expect(human.stdout).toMatch(/e2e-box \(this machine\)\s+online/);
  });

  it('the same code again exits 1 with the message', async () => {
    const r = await runt(['workstation', 'connect', cp.url, '--code', code], {
      RUNT_CONFIG_DIR: join(configDir, '..', 'other'),
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toBe(`runt: ${REJECTED}`);
  });

  it('an expired code exits 1 with the same message', async () => {
    const fresh = await mintCode();
    await t.db.query(
      `update pairing_codes set expires_at = now() - interval '1 second' where redeemed_at is null`,
    );
    const r = await runt(['workstation', 'connect', cp.url, '--code', fresh], {
      RUNT_CONFIG_DIR: join(configDir, '..', 'other'),
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toBe(`runt: ${REJECTED}`);
  });

  it('a missing code without a terminal fails clearly', async () => {
    const r = await runt(['workstation', 'connect', cp.url], {
      RUNT_CONFIG_DIR: join(configDir, '..', 'other'),
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toBe('runt: missing --code: no terminal to prompt for the pairing code on');
  });

  it('prompts for the code on a terminal and names the machine after its bare hostname', async () => {
    const fresh = await mintCode();
    const dir = join(configDir, '..', 'prompted');
    const pty = spawn('node', [RUNT_BIN, 'workstation', 'connect', cp.url], {
      cols: 100,
      rows: 30,
      env: { ...(process.env as Record<string, string>), RUNT_CONFIG_DIR: dir },
    });
    let screen = '';
    pty.onData((d) => (screen += d));
    const exited = new Promise<number>((resolve) => pty.onExit(({ exitCode }) => resolve(exitCode)));
    for (let i = 0; i < 400 && !screen.includes('Pairing code'); i++)
      await new Promise((r) => setTimeout(r, 25));
    expect(screen).toContain('Pairing code (XXXX-XXXX-XXXX): ');
    pty.write(`${fresh.toLowerCase()}\r`);
    expect(await exited).toBe(0);
    const cred = JSON.parse(readFileSync(join(dir, 'workstation.json'), 'utf8'));
    expect(cred.display_name).toBe(hostname().split('.')[0]);
  });

  it('an unreachable URL says so in one line and exits nonzero', async () => {
    const r = await runt(['workstation', 'connect', 'http://127.0.0.1:9', '--code', 'ABCD-EFGH-JKMN'], {
      RUNT_CONFIG_DIR: join(configDir, '..', 'other'),
    });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^runt: cannot reach http:\/\/127\.0\.0\.1:9/);
  });

  it('the token is nowhere in the database or the logs in plain text', async () => {
    expect(token).toMatch(/^rnt_ws_/);
    const secret = token.slice('rnt_ws_'.length);
    const tables = await t.db.query<{ table_name: string }>(
      `select table_name from information_schema.tables where table_schema = 'public'`,
    );
    for (const { table_name } of tables.rows) {
      expect(JSON.stringify((await t.db.query(`select * from ${table_name}`)).rows)).not.toContain(secret);
    }
    expect(logs.length).toBeGreaterThan(0);
    expect(logs.join('')).not.toContain(secret);
  });

  it('brute force gets 429 with Retry-After', async () => {
    let status = 0;
    let retryAfter: string | null = null;
    for (let i = 0; i < 10 && status !== 429; i++) {
      const res = await fetch(`${cp.url}/api/workstations/pairing-codes/redeem`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ code: `ZZZZ-ZZZZ-ZZZ${'23456789A'[i]}` }),
      });
      status = res.status;
      retryAfter = res.headers.get('retry-after');
    }
    expect(status).toBe(429);
    expect(Number(retryAfter)).toBeGreaterThan(0);
    const r = await runt(['workstation', 'connect', cp.url, '--code', 'ZZZZ-ZZZZ-ZZZZ'], {
      RUNT_CONFIG_DIR: join(configDir, '..', 'other'),
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^runt: .*(too many|try again)/i);
  });

  it('revoke cuts the workstation off; disconnect forgets the credential', async () => {
    const creds = await runt(['admin', 'credentials', '--url', cp.url, '--json'], admin);
    const mine = JSON.parse(creds.stdout).credentials.find(
      (c: { display_name: string }) => c.display_name === 'e2e-box',
    );
    const rev = await runt(['admin', 'revoke', mine.id, '--url', cp.url], admin);
    expect(rev.exitCode, rev.stderr).toBe(0);
    const status = await runt(['workstation', 'status'], env);
    expect(status.exitCode).toBe(1);
    expect(status.stderr).toMatch(/^runt: .*revoked/);
    const dis = await runt(['workstation', 'disconnect'], env);
    expect(dis.exitCode).toBe(0);
    expect(readdirSync(configDir)).toEqual([]);
    const after = await runt(['workstation', 'status'], env);
    expect(after.exitCode).toBe(1);
    expect(after.stderr.trim()).toBe(
      'runt: this machine is not paired: run runt workstation connect <url> --code XXXX-XXXX-XXXX',
    );
  });
});
