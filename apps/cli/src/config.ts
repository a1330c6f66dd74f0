import { readFile } from 'node:fs/promises';
import { ControlPlaneClient } from '@runt/protocol';
import { loadCredential, type WorkstationCredential } from '@runt/pairing';
import { CliError } from './errors.js';

/** The stored workstation credential (RUNT_CLOUD_URL / RUNT_CLOUD_TOKEN win), or a clear error. */
export async function requireCredential(): Promise<WorkstationCredential> {
  const cred = await loadCredential();
  if (!cred?.cloud_url || !cred.token) {
    throw new CliError('this machine is not paired: run runt workstation connect <url> --code XXXX-XXXX-XXXX');
  }
  return cred;
}

/** A client authenticated as this workstation. */
export async function workstationClient(): Promise<{ client: ControlPlaneClient; credential: WorkstationCredential }> {
  const credential = await requireCredential();
  return { client: new ControlPlaneClient({ url: credential.cloud_url, token: credential.token }), credential };
}

/**
 * A client authenticated as an operator: the URL from `--url` or RUNT_CLOUD_URL, the token
 * from `--token-file` or RUNT_ADMIN_TOKEN (never from argv).
 */
export async function adminClient(flags: { url?: string | undefined; 'token-file'?: string | undefined }): Promise<ControlPlaneClient> {
  const url = flags.url ?? process.env.RUNT_CLOUD_URL;
  if (!url) throw new CliError('missing --url (or RUNT_CLOUD_URL): where is the control plane?');
  let token = process.env.RUNT_ADMIN_TOKEN?.trim();
  if (flags['token-file']) {
    token = await readFile(flags['token-file'], 'utf8').then(
      (s) => s.trim(),
      (e: NodeJS.ErrnoException) => {
        throw new CliError(`cannot read the admin token file ${flags['token-file']}: ${e.code ?? e.message}`);
      },
    );
  }
  if (!token) throw new CliError('missing admin token: set RUNT_ADMIN_TOKEN or pass --token-file (the control plane printed where it is)');
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
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CliError(`the control plane URL must be http(s): ${input}`);
  return u.toString().replace(/\/+$/, '');
}
