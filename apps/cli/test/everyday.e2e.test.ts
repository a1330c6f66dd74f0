import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, startControlPlane, type RunningControlPlane } from '@runt/control-plane';
import { createTestDatabase, type TestDatabase } from '@runt/sql/testing';
import { mintToken } from '@runt/transport-auth';
import { runt } from './cli.js';

/** Issue 12's "Annoys": whole error messages, remembered URL and admin login, disconnect --revoke. */
describe('everyday CLI use', () => {
  let t: TestDatabase;
  let cp: RunningControlPlane;
  const adminToken = mintToken('admin');
  const fresh = () => ({ RUNT_CONFIG_DIR: join(mkdtempSync(join(tmpdir(), 'runt-everyday-')), 'config') });

  beforeAll(async () => {
    t = await createTestDatabase('pglite');
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    cp = await startControlPlane(
      loadConfig(
        {},
        { host: '127.0.0.1', port: 0, adminToken, dataDir: mkdtempSync(join(tmpdir(), 'runt-cp-')) },
      ),
      {
        db: t.db,
        logDestination: sink,
      },
    );
  });
  afterAll(async () => {
    await cp?.close();
    await t?.dispose();
  });

  it.each([
    ['submit without --runtime', ['run', 'submit', '--', 'echo'], 2, 'runt: missing required flag --runtime'],
    [
      '--max-attempts 0',
      ['run', 'submit', '--runtime', 'process', '--max-attempts', '0', '--', 'echo'],
      2,
      'runt: --max-attempts: Expected an integer greater than or equal to 1 but received: 0',
    ],
    [
      '--ttl 0',
      ['admin', 'pairing-code', '--ttl', '0'],
      2,
      'runt: --ttl: Expected an integer greater than or equal to 1 but received: 0',
    ],
    ['a missing argument', ['run', 'show'], 2, 'runt: missing required argument id (run id)'],
  ])('%s: one whole line', async (_name, args, exitCode, message) => {
    const r = await runt(args, fresh());
    expect(r.stderr).toBe(message); // execa strips the final newline
    expect(r.exitCode).toBe(exitCode);
  });

  it('a wrong admin token is named as such, with operator advice and the word "token" intact', async () => {
    const unknown = await runt(['run', 'list', '--url', cp.url], {
      ...fresh(),
      RUNT_ADMIN_TOKEN: mintToken('admin'),
    });
    expect(unknown.stderr).toBe(
      'runt: the control plane refused the admin token (it is unknown or revoked): check RUNT_ADMIN_TOKEN, --token-file or runt admin login',
    );
    const malformed = await runt(['run', 'list', '--url', cp.url], {
      ...fresh(),
      RUNT_ADMIN_TOKEN: 'not-a-token',
    });
    expect(malformed.stderr).toBe(
      'runt: the control plane refused the admin token (it is malformed): check RUNT_ADMIN_TOKEN, --token-file or runt admin login',
    );
    expect(malformed.exitCode).toBe(1);
  });

  it('a process run without a command is refused at submit with the reason', async () => {
    const r = await runt(['run', 'submit', '--url', cp.url, '--runtime', 'process'], {
      ...fresh(),
      RUNT_ADMIN_TOKEN: adminToken,
    });
    expect(r.stderr).toBe(
      'runt: command: a run on the process runtime needs a command (e.g. ["sh", "-c", "make test"])',
    );
    expect(r.exitCode).toBe(1);
  });

  it('admin login stores URL and token 0600; operator commands then need neither, workstation status included', async () => {
    const env = fresh();
    const tokenFile = join(mkdtempSync(join(tmpdir(), 'runt-tok-')), 'admin-token');
    writeFileSync(tokenFile, `${mintToken('admin')}\n`);
    const refused = await runt(['admin', 'login', '--url', cp.url, '--token-file', tokenFile], env);
    expect(refused.stderr).toBe(
      `runt: the control plane at ${cp.url} refused this admin token; nothing stored`,
    );
    writeFileSync(tokenFile, `${adminToken}\n`);
    const login = await runt(['admin', 'login', '--url', cp.url, '--token-file', tokenFile], env);
    expect(login.exitCode, login.stderr).toBe(0);
    const stored = join(env.RUNT_CONFIG_DIR, 'admin.json');
    expect(login.stdout).toBe(`Logged in to ${cp.url}; URL and admin token stored in ${stored} (mode 0600).`);
    expect(statSync(stored).mode & 0o777).toBe(0o600);
    const list = await runt(['run', 'list', '--json'], env);
    expect(list.exitCode, list.stderr).toBe(0);
    const status = await runt(['workstation', 'status', '--json'], env);
    expect(status.exitCode, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toHaveProperty('workstations');
  });

  it('admin undrain takes a drain back (one line; --json; an unknown id is one line and exit 1)', async () => {
    const auth = { RUNT_ADMIN_TOKEN: adminToken, ...fresh() };
    const minted = await runt(['admin', 'pairing-code', '--url', cp.url, '--json'], auth);
    const code: string = JSON.parse(minted.stdout).pairing.code;
    const redeemed = await fetch(`${cp.url}/api/workstations/pairing-codes/redeem`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ code, display_name: 'undrain-cli' }),
    });
    const { workstation, credential } = (await redeemed.json()) as {
      workstation: { id: string };
      credential: { token: string };
    };
    await fetch(`${cp.url}/api/workstations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${credential.token}` },
      body: JSON.stringify({
        display_name: 'undrain-cli',
        cpu_count: 1,
        runtimes: ['process'],
        agent_version: 't',
        listening: true,
      }),
    });
    const drained = await runt(['admin', 'drain', workstation.id, '--url', cp.url], auth);
    expect(drained.stdout).toBe(`Draining ${workstation.id} (undrain-cli): draining.`);
    const undrained = await runt(['admin', 'undrain', workstation.id, '--url', cp.url], auth);
    expect(undrained.exitCode, undrained.stderr).toBe(0);
    expect(undrained.stdout).toBe(`Undrained ${workstation.id} (undrain-cli): online.`);
    const json = await runt(['admin', 'undrain', workstation.id, '--url', cp.url, '--json'], auth);
    expect(JSON.parse(json.stdout).workstation).toMatchObject({ id: workstation.id, status: 'online' });
    const unknown = await runt(['admin', 'undrain', 'ws_nope', '--url', cp.url], auth);
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr.split('\n')).toHaveLength(1);
    expect(unknown.stderr).toContain('no such workstation');
  });

  it('after connect, run commands use the paired URL; disconnect says the credential stays valid, --revoke ends it', async () => {
    const env = fresh();
    const code = async () =>
      JSON.parse(
        (await runt(['admin', 'pairing-code', '--url', cp.url, '--json'], { RUNT_ADMIN_TOKEN: adminToken }))
          .stdout,
      ).pairing.code as string;
    expect(
      (await runt(['workstation', 'connect', cp.url, '--code', await code(), '--name', 'kept'], env))
        .exitCode,
    ).toBe(0);
    const list = await runt(['run', 'list', '--json'], { ...env, RUNT_ADMIN_TOKEN: adminToken });
    expect(list.exitCode, list.stderr).toBe(0);

    const kept = (await cp.credentials.list()).find((c) => c.display_name === 'kept')!;
    const plain = await runt(['workstation', 'disconnect'], env);
    expect(plain.stdout).toBe(
      `Forgot the credential at ${join(env.RUNT_CONFIG_DIR, 'workstation.json')}.\n` +
        `It is still valid on ${cp.url} until revoked: runt workstation disconnect --revoke next time, or an operator runs runt admin revoke ${kept.id}.`,
    );
    expect((await cp.credentials.list()).find((c) => c.id === kept.id)!.revoked_at).toBeNull();

    expect(
      (await runt(['workstation', 'connect', cp.url, '--code', await code(), '--name', 'gone'], env))
        .exitCode,
    ).toBe(0);
    const gone = (await cp.credentials.list()).find((c) => c.display_name === 'gone')!;
    const revoked = await runt(['workstation', 'disconnect', '--revoke'], env);
    expect(revoked.stdout).toBe(
      `Revoked credential ${gone.id} on ${cp.url} and forgot it (${join(env.RUNT_CONFIG_DIR, 'workstation.json')}).`,
    );
    expect((await cp.credentials.list()).find((c) => c.id === gone.id)!.revoked_at).not.toBeNull();
  });
});
