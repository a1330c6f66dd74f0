import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { mintToken } from '@runt/transport-auth';
import { describe, expect, it } from 'vitest';
import {
  credentialPath,
  credentialUrls,
  deleteCredential,
  loadCredential,
  saveCredential,
  type WorkstationCredential,
} from './credential-store.js';
import { isPairingError } from './pairing-error.js';

const fresh = () => join(mkdtempSync(join(tmpdir(), 'runt-cred-')), 'nested', 'runt');
const mode = (p: string) => statSync(p).mode & 0o777;

function credential(over: Partial<WorkstationCredential> = {}): WorkstationCredential {
  return {
    cloud_url: 'https://runt.example.com',
    token: mintToken('workstation'),
    credential_id: 'cred_1',
    workstation_id: 'ws_1',
    display_name: 'build-01',
    connected_at: '2025-01-01T00:00:00.000Z',
    ...over,
  };
}

async function rejectionOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

describe('credential store', () => {
  it('puts workstation.json under configDir, RUNT_CONFIG_DIR, or the platform config dir for runt', () => {
    expect(credentialPath({ configDir: '/etc/runt' })).toBe(join('/etc/runt', 'workstation.json'));
    expect(credentialPath({ env: { RUNT_CONFIG_DIR: '/srv/runt' } })).toBe(
      join('/srv/runt', 'workstation.json'),
    );
    expect(credentialPath({ configDir: '/a', env: { RUNT_CONFIG_DIR: '/b' } })).toBe(
      join('/a', 'workstation.json'),
    );
    const platform = credentialPath({ env: {} });
    expect(
      platform.endsWith(`${sep}runt${sep}workstation.json`) ||
        platform.endsWith(`${sep}runt${sep}Config${sep}workstation.json`),
    ).toBe(true);
  });

  it('saves with a 0700 directory and a 0600 file, atomically, and loads it back', async () => {
    const dir = fresh();
    const cred = credential();
    const path = await saveCredential(cred, { configDir: dir });
    expect(path).toBe(join(dir, 'workstation.json'));
    expect(mode(dir)).toBe(0o700);
    expect(mode(path)).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['workstation.json']);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual(cred);
    expect(await loadCredential({ configDir: dir, env: {} })).toEqual(cred);

    // Overwriting replaces the file in place, keeps the modes, and leaves no temp file behind.
    const next = credential({ display_name: 'build-02' });
    await saveCredential(next, { configDir: dir });
    expect(readdirSync(dir)).toEqual(['workstation.json']);
    expect(mode(path)).toBe(0o600);
    expect(await loadCredential({ configDir: dir, env: {} })).toEqual(next);
  });

  it('leaves no temp file behind and the old state intact when the final rename fails', async () => {
    const dir = fresh();
    // A directory where the file should go makes the rename fail after the temp file is written.
    mkdirSync(join(dir, 'workstation.json'), { recursive: true });
    const e = await rejectionOf(saveCredential(credential(), { configDir: dir }));
    expect((e as NodeJS.ErrnoException).code).toMatch(/EISDIR|ENOTEMPTY|EEXIST|EPERM/);
    expect(readdirSync(dir)).toEqual(['workstation.json']);
    expect(statSync(join(dir, 'workstation.json')).isDirectory()).toBe(true);
  });

  it('tightens an existing group/world-readable directory to 0700 and a looser umask does not matter', async () => {
    const dir = fresh();
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    chmodSync(dir, 0o755);
    const old = process.umask(0o000);
    try {
      await saveCredential(credential(), { configDir: dir });
    } finally {
      process.umask(old);
    }
    expect(mode(dir)).toBe(0o700);
    expect(mode(join(dir, 'workstation.json'))).toBe(0o600);
  });

  it('refuses to save an invalid credential, without writing anything', async () => {
    const dir = fresh();
    const e = await rejectionOf(saveCredential(credential({ cloud_url: 'not a url' }), { configDir: dir }));
    expect(isPairingError(e, 'credential-invalid')).toBe(true);
    expect((e as Error).message).toContain('cloud_url');
    expect(await loadCredential({ configDir: dir, env: {} })).toBeUndefined();
  });

  it('lets RUNT_CLOUD_URL / RUNT_CLOUD_TOKEN override the file, or stand alone when both are set', async () => {
    const dir = fresh();
    const cred = credential();
    await saveCredential(cred, { configDir: dir });
    const token = mintToken('workstation');
    expect(await loadCredential({ configDir: dir, env: { RUNT_CLOUD_TOKEN: token } })).toEqual({
      ...cred,
      token,
    });
    expect(
      await loadCredential({
        configDir: dir,
        env: { RUNT_CLOUD_URL: 'http://127.0.0.1:8787', RUNT_CLOUD_TOKEN: '' },
      }),
    ).toEqual({
      ...cred,
      cloud_url: 'http://127.0.0.1:8787',
    });

    const empty = fresh();
    expect(
      await loadCredential({
        configDir: empty,
        env: { RUNT_CLOUD_URL: 'http://cp:8787', RUNT_CLOUD_TOKEN: token },
      }),
    ).toEqual({
      cloud_url: 'http://cp:8787',
      token,
      credential_id: '',
      workstation_id: '',
      display_name: '',
      connected_at: '',
    });
    expect(
      await loadCredential({ configDir: empty, env: { RUNT_CLOUD_URL: 'http://cp:8787' } }),
    ).toBeUndefined();
    expect(await loadCredential({ configDir: empty, env: { RUNT_CLOUD_TOKEN: token } })).toBeUndefined();
    // RUNT_CONFIG_DIR from the given env is where the file is looked for.
    expect(await loadCredential({ env: { RUNT_CONFIG_DIR: dir } })).toEqual(cred);

    const badUrl = await rejectionOf(loadCredential({ configDir: dir, env: { RUNT_CLOUD_URL: 'cp:8787' } }));
    expect(isPairingError(badUrl, 'credential-invalid')).toBe(true);
    expect((badUrl as Error).message).toContain('RUNT_CLOUD_URL');
  });

  it('keeps several control-plane URLs (stored, or a comma-separated RUNT_CLOUD_URL), the first as cloud_url', async () => {
    const dir = fresh();
    const urls = ['https://a.example.com', 'https://b.example.com'];
    const cred = credential({ cloud_url: urls[0]!, cloud_urls: urls });
    await saveCredential(cred, { configDir: dir });
    const loaded = await loadCredential({ configDir: dir, env: {} });
    expect(loaded).toEqual(cred);
    expect(credentialUrls(loaded!)).toEqual(urls);
    // A single-URL credential is a list of one.
    expect(credentialUrls(credential())).toEqual(['https://runt.example.com']);
    // The environment's list wins over the stored one; a single URL there replaces the list.
    const fromEnv = await loadCredential({
      configDir: dir,
      env: { RUNT_CLOUD_URL: 'http://c:8787, http://d:8787' },
    });
    expect(fromEnv).toMatchObject({
      cloud_url: 'http://c:8787',
      cloud_urls: ['http://c:8787', 'http://d:8787'],
    });
    const single = await loadCredential({ configDir: dir, env: { RUNT_CLOUD_URL: 'http://c:8787' } });
    expect(credentialUrls(single!)).toEqual(['http://c:8787']);
    // Every entry must be an http(s) URL.
    const bad = await rejectionOf(
      loadCredential({ configDir: dir, env: { RUNT_CLOUD_URL: 'http://c:8787,ftp://d' } }),
    );
    expect(isPairingError(bad, 'credential-invalid')).toBe(true);
    await expect(saveCredential(credential({ cloud_urls: [] }), { configDir: dir })).rejects.toThrow(
      /cloud_urls/,
    );
  });

  it('reports a corrupt or incomplete file clearly, never echoing the token', async () => {
    const dir = fresh();
    const token = mintToken('workstation');
    await saveCredential(credential({ token }), { configDir: dir });
    const path = join(dir, 'workstation.json');

    writeFileSync(path, `{"token":"${token}", `);
    const corrupt = await rejectionOf(loadCredential({ configDir: dir, env: {} }));
    expect(isPairingError(corrupt, 'credential-invalid')).toBe(true);
    expect((corrupt as Error).message).toBe(`${path} is not valid JSON; delete it and connect again`);

    writeFileSync(path, JSON.stringify({ token, cloud_url: 42 }));
    const incomplete = await rejectionOf(loadCredential({ configDir: dir, env: {} }));
    expect(isPairingError(incomplete, 'credential-invalid')).toBe(true);
    expect((incomplete as Error).message).toContain(path);
    expect((incomplete as Error).message).toContain('cloud_url');
    expect((incomplete as Error).message).toContain('workstation_id');
    expect((incomplete as Error).message).not.toContain(token);
  });

  it('deletes the credential once', async () => {
    const dir = fresh();
    await saveCredential(credential(), { configDir: dir });
    expect(await deleteCredential({ configDir: dir })).toBe(true);
    expect(await deleteCredential({ configDir: dir })).toBe(false);
    expect(await loadCredential({ configDir: dir, env: {} })).toBeUndefined();
  });
});
