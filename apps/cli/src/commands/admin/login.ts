import { Command, Flags } from '@oclif/core';
import { ControlPlaneClient } from '@runt/protocol';
import { adminLoginPath, parseUrl, readTokenFile, saveAdminLogin } from '../../config.js';
import { CliError } from '../../errors.js';

export default class AdminLogin extends Command {
  static override summary = 'Remember a control plane URL and its admin token for the operator commands.';
  static override description =
    'Checks the token against the control plane, then stores both in admin.json (mode 0600) in the config dir. The token is read from --token-file, RUNT_ADMIN_TOKEN or stdin, never from argv. Flags and env still win over the stored values.';
  static override examples = [
    '<%= config.bin %> admin login --url http://127.0.0.1:8787 --token-file .runt/admin-token',
    'cat .runt/admin-token | <%= config.bin %> admin login --url http://127.0.0.1:8787',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    url: Flags.string({ description: 'control plane URL', required: true }),
    'token-file': Flags.string({
      description: 'file holding the admin token (default: RUNT_ADMIN_TOKEN, else stdin)',
    }),
  };

  async run() {
    const { flags } = await this.parse(AdminLogin);
    const url = parseUrl(flags.url);
    const token = flags['token-file']
      ? await readTokenFile(flags['token-file'])
      : process.env.RUNT_ADMIN_TOKEN?.trim() || (await readStdin());
    if (!token)
      throw new CliError('missing admin token: pass --token-file, set RUNT_ADMIN_TOKEN, or pipe it on stdin');
    await new ControlPlaneClient({ url, token }).listCredentials().catch((e: unknown) => {
      const status = (e as { status?: number }).status;
      if (status === 401 || status === 403)
        throw new CliError(`the control plane at ${url} refused this admin token; nothing stored`);
      throw e;
    });
    const path = await saveAdminLogin({ url, token });
    this.log(`Logged in to ${url}; URL and admin token stored in ${path} (mode 0600).`);
    return { url, path: adminLoginPath() };
  }
}

async function readStdin(): Promise<string | undefined> {
  if (process.stdin.isTTY) return undefined;
  let data = '';
  for await (const chunk of process.stdin) data += String(chunk);
  return data.trim() || undefined;
}
