import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Args, Flags } from '@oclif/core';
import { ControlPlaneClient } from '@runt/protocol';
import { credentialPath, loadCredential, type WorkstationCredential } from '@runt/pairing';
import { CliError } from './errors.js';

/** Which credential this invocation talks with; the error boundary words a 401 for it. */
let credentialInUse: 'admin' | 'workstation' | undefined;
export const credentialKindInUse = () => credentialInUse;

/** The stored workstation credential (RUNT_CLOUD_URL / RUNT_CLOUD_TOKEN win), or a clear error. */
export async function requireCredential(): Promise<WorkstationCredential> {
  const cred = await loadCredential();
  if (!cred?.cloud_url || !cred.token) {
    throw new CliError(
      'this machine is not paired: run runt workstation connect <url> --code XXXX-XXXX-XXXX',
    );
  }
  return cred;
}

/** A client authenticated as this workstation. */
export async function workstationClient(): Promise<{
  client: ControlPlaneClient;
  credential: WorkstationCredential;
}> {
  const credential = await requireCredential();
  credentialInUse = 'workstation';
  return {
    client: new ControlPlaneClient({ url: credential.cloud_url, token: credential.token }),
    credential,
  };
}

/** What `runt admin login` stores (0600, beside workstation.json). */
export interface AdminLogin {
  url: string;
  token: string;
}

export const adminLoginPath = () => join(dirname(credentialPath()), 'admin.json');

/** Stores the operator's URL and token in a 0600 file (0700 dir), replacing it atomically. */
export async function saveAdminLogin(login: AdminLogin): Promise<string> {
  const path = adminLoginPath();
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(login, null, 2)}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
  return path;
}

async function loadAdminLogin(): Promise<Partial<AdminLogin>> {
  try {
    const parsed = JSON.parse(await readFile(adminLoginPath(), 'utf8')) as Partial<AdminLogin>;
    return {
      ...(typeof parsed.url === 'string' ? { url: parsed.url } : {}),
      ...(typeof parsed.token === 'string' ? { token: parsed.token } : {}),
    };
  } catch {
    return {};
  }
}

export interface AdminFlags {
  url?: string | undefined;
  'token-file'?: string | undefined;
}

/**
 * Where the operator's control plane is and the admin token, the first found of:
 * URL: `--url`, RUNT_CLOUD_URL, `runt admin login`'s file, this machine's pairing.
 * Token: `--token-file`, RUNT_ADMIN_TOKEN, `runt admin login`'s file (never argv).
 */
export async function resolveAdmin(
  flags: AdminFlags,
): Promise<{ url: string | undefined; token: string | undefined }> {
  const login = await loadAdminLogin();
  const env = (k: string) => process.env[k]?.trim() || undefined;
  const url =
    flags.url ??
    env('RUNT_CLOUD_URL') ??
    login.url ??
    (await loadCredential().catch(() => undefined))?.cloud_url ??
    undefined;
  let token = env('RUNT_ADMIN_TOKEN') ?? login.token;
  if (flags['token-file']) token = await readTokenFile(flags['token-file']);
  return { url: url ? parseUrl(url) : undefined, token };
}

export async function readTokenFile(file: string): Promise<string> {
  return readFile(file, 'utf8').then(
    (s) => s.trim(),
    (e: NodeJS.ErrnoException) => {
      throw new CliError(`cannot read the admin token file ${file}: ${e.code ?? e.message}`);
    },
  );
}

/**
 * The operator's `--url` and `--token-file`, the one definition every admin-speaking command
 * spreads into its flags (resolved by {@link resolveAdmin}; the token never on argv).
 *
 * @example
 * static override flags = { ...adminFlags, limit: Flags.integer() };
 */
export const adminFlags = {
  url: Flags.string({
    description:
      'control plane URL (default: RUNT_CLOUD_URL, runt admin login, or where this machine is paired)',
  }),
  'token-file': Flags.string({
    description: 'file holding the admin token (default: RUNT_ADMIN_TOKEN, or runt admin login)',
  }),
};

/** The workstation argument of the operator commands that act on one workstation (resolved with workstation-ref.ts). */
export const workstationIdArg = Args.string({
  required: true,
  description: 'workstation name or id (runt workstation status lists them)',
});

/** A client authenticated as an operator (see {@link resolveAdmin}), or a clear error. */
export async function adminClient(flags: AdminFlags): Promise<ControlPlaneClient> {
  const { url, token } = await resolveAdmin(flags);
  if (!url)
    throw new CliError('missing --url (or RUNT_CLOUD_URL, or runt admin login): where is the control plane?');
  if (!token)
    throw new CliError(
      'missing admin token: set RUNT_ADMIN_TOKEN, pass --token-file, or run runt admin login (the control plane printed where its token is)',
    );
  credentialInUse = 'admin';
  return new ControlPlaneClient({ url, token });
}

/** Validates a URL argument: http(s) only, no trailing slash. */
export function parseUrl(input: string): string {
  let u: URL;
  try {
    u = new URL(input);
  } catch {
    throw new CliError(`not a URL: ${input}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new CliError(`the control plane URL must be http(s): ${input}`);
  return u.toString().replace(/\/+$/, '');
}

/**
 * One control-plane URL or several, comma-separated (replicas without a load balancer), each
 * checked like {@link parseUrl}; duplicates dropped, order kept.
 *
 * @example
 * parseUrls('http://a:8787, http://b:8787'); // ['http://a:8787', 'http://b:8787']
 */
export function parseUrls(input: string): string[] {
  const urls = input
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(parseUrl);
  if (urls.length === 0) throw new CliError(`not a URL: ${input}`);
  return [...new Set(urls)];
}
