import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import envPaths from 'env-paths';
import { z } from 'zod';
import { PairingError } from './pairing-error.js';

/** What a paired workstation keeps in `<config dir>/workstation.json` (mode 0600). */
export interface WorkstationCredential {
  /** The control plane (the first of `cloud_urls` when there are several). */
  cloud_url: string;
  /**
   * Every control-plane URL the agent may use, in order (replicas without a load balancer);
   * absent means just `cloud_url`. See {@link credentialUrls}.
   */
  cloud_urls?: string[];
  token: string;
  credential_id: string;
  workstation_id: string;
  display_name: string;
  connected_at: string;
}

const httpUrl = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}, 'must be an http(s) URL');

const CredentialSchema = z.object({
  cloud_url: httpUrl,
  cloud_urls: z.array(httpUrl).min(1).optional(),
  token: z.string().min(1, 'must not be empty'),
  credential_id: z.string(),
  workstation_id: z.string(),
  display_name: z.string(),
  connected_at: z.string(),
});

const FILE_NAME = 'workstation.json';

interface PathOptions {
  configDir?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * Where the workstation credential lives: `<configDir>/workstation.json`, where `configDir` is
 * the option, else `RUNT_CONFIG_DIR`, else the platform config directory for `runt`
 * (`~/.config/runt` on Linux, `~/Library/Preferences/runt` on macOS, `%APPDATA%\runt\Config`
 * on Windows). Pure: nothing is created.
 *
 * @example
 * credentialPath({ configDir: '/etc/runt' }); // '/etc/runt/workstation.json'
 */
export function credentialPath(opts: PathOptions = {}): string {
  const env = opts.env ?? process.env;
  const dir =
    nonEmpty(opts.configDir) ?? nonEmpty(env.RUNT_CONFIG_DIR) ?? envPaths('runt', { suffix: '' }).config;
  return join(dir, FILE_NAME);
}

/**
 * Writes the credential atomically: the directory is created (or tightened) to 0700, the JSON
 * goes to a 0600 temp file in the same directory, is fsynced, and renamed over
 * `workstation.json`, so a crash leaves the old file or the new one, never half of either.
 * Returns the path written.
 *
 * @example
 * const path = await saveCredential({ cloud_url, token, credential_id, workstation_id, display_name, connected_at: new Date().toISOString() });
 */
export async function saveCredential(
  cred: WorkstationCredential,
  opts: { configDir?: string } = {},
): Promise<string> {
  const parsed = CredentialSchema.safeParse(cred);
  if (!parsed.success)
    throw new PairingError(
      'credential-invalid',
      `refusing to save an invalid credential: ${describe(parsed.error)}`,
    );
  const path = credentialPath(opts);
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (((await stat(dir)).mode & 0o077) !== 0) await chmod(dir, 0o700);

  const tmp = join(dir, `.${FILE_NAME}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.chmod(0o600); // exact mode whatever the umask
      await fh.writeFile(`${JSON.stringify(parsed.data, null, 2)}\n`, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await syncDir(dir);
  return path;
}

/**
 * Reads the stored credential, `undefined` when there is none. `RUNT_CLOUD_URL` and
 * `RUNT_CLOUD_TOKEN` (from `opts.env`, default `process.env`) override the file's fields; with
 * no file and both set, the result holds just those two (the other fields are empty strings).
 * A file that is not valid JSON or lacks fields throws `PairingError('credential-invalid')`
 * naming the file and the bad fields, never their values.
 *
 * @example
 * const cred = await loadCredential();
 * if (!cred) throw new Error('not connected: run `runt workstation connect`');
 */
export async function loadCredential(opts: PathOptions = {}): Promise<WorkstationCredential | undefined> {
  const env = opts.env ?? process.env;
  const path = credentialPath({ ...opts, env });
  const url = nonEmpty(env.RUNT_CLOUD_URL);
  const token = nonEmpty(env.RUNT_CLOUD_TOKEN);

  let text: string | undefined;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new PairingError('credential-unreadable', `cannot read ${path}: ${(e as Error).message}`, {
        cause: e,
      });
    }
  }

  let base: Record<string, unknown>;
  if (text === undefined) {
    if (url === undefined || token === undefined) return undefined;
    base = { credential_id: '', workstation_id: '', display_name: '', connected_at: '' };
  } else {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new PairingError('credential-invalid', `${path} is not valid JSON; delete it and connect again`);
    }
    const fromFile = CredentialSchema.safeParse(json);
    if (!fromFile.success) {
      throw new PairingError(
        'credential-invalid',
        `${path} is not a runt credential (${describe(fromFile.error)}); delete it and connect again`,
      );
    }
    base = fromFile.data;
  }

  // RUNT_CLOUD_URL may list several URLs, comma-separated: the first is `cloud_url`.
  const urls = url
    ?.split(',')
    .map((u) => u.trim())
    .filter(Boolean);
  const merged = CredentialSchema.safeParse({
    ...base,
    ...(urls !== undefined && urls.length > 0
      ? { cloud_url: urls[0], cloud_urls: urls.length > 1 ? urls : undefined }
      : {}),
    ...(token !== undefined ? { token } : {}),
  });
  if (!merged.success) {
    throw new PairingError(
      'credential-invalid',
      `RUNT_CLOUD_URL/RUNT_CLOUD_TOKEN are not usable (${describe(merged.error)})`,
    );
  }
  return merged.data;
}

/**
 * Removes the stored credential; `true` when there was one.
 *
 * @example
 * if (await deleteCredential()) console.log('disconnected');
 */
export async function deleteCredential(opts: { configDir?: string } = {}): Promise<boolean> {
  try {
    await unlink(credentialPath(opts));
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s.trim() === '' ? undefined : s.trim();
}

/** Field names and problems only: values may be secrets. */
function describe(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

async function syncDir(dir: string): Promise<void> {
  // Makes the rename itself durable; not supported everywhere (Windows), so best effort.
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    /* ignore */
  }
}

/**
 * Every control-plane URL of a credential, in order: `cloud_urls` when stored (or given as a
 * comma-separated `RUNT_CLOUD_URL`), else `[cloud_url]`.
 *
 * @example
 * const env = { RUNT_CLOUD_URL: credentialUrls(cred).join(',') }; // what the agent takes
 */
export function credentialUrls(cred: Pick<WorkstationCredential, 'cloud_url' | 'cloud_urls'>): string[] {
  return cred.cloud_urls && cred.cloud_urls.length > 0 ? cred.cloud_urls : [cred.cloud_url];
}
