import { createInterface } from 'node:readline/promises';
import { hostname } from 'node:os';
import { Args, Command, Flags } from '@oclif/core';
import { ControlPlaneClient } from '@runt/protocol';
import {
  isPairingError,
  normalizePairingCode,
  PairingCodeRejectedError,
  redeemPairingCode,
  saveCredential,
} from '@runt/pairing';
import { parseUrls } from '../../config.js';
import { CliError } from '../../errors.js';
import { bareHostname, hostCapacity } from '../../host-facts.js';

export default class WorkstationConnect extends Command {
  static override summary = 'Pair this machine with a control plane using a one-time code.';
  static override description =
    'Redeems the pairing code, stores the workstation credential (0600) in the config dir, and registers once with listening:false so nothing is offered before the agent runs.';
  static override examples = [
    '<%= config.bin %> workstation connect https://runt.example.com --code ABCD-EFGH-JKMN',
  ];
  static override enableJsonFlag = true;
  static override args = {
    url: Args.string({
      required: true,
      description:
        'control plane URL, or several comma-separated (replicas without a load balancer: all are stored for the agent, the first that answers redeems)',
    }),
  };
  static override flags = {
    code: Flags.string({
      description: 'pairing code XXXX-XXXX-XXXX (prompted for when omitted on a terminal)',
    }),
    name: Flags.string({ description: 'display name (default: the bare hostname)' }),
  };

  async run() {
    const { args, flags } = await this.parse(WorkstationConnect);
    const urls = parseUrls(args.url);
    const code = flags.code ?? (await promptForCode());
    if (!normalizePairingCode(code)) throw new PairingCodeRejectedError();
    const displayName = flags.name?.trim() || bareHostname();

    // The first URL that answers redeems (replicas share one database); the others are stored too.
    let url = urls[0]!;
    let redeemed: Awaited<ReturnType<typeof redeemPairingCode>> | undefined;
    for (const [i, candidate] of urls.entries()) {
      try {
        url = candidate;
        redeemed = await redeemPairingCode(url, code, { display_name: displayName, hostname: hostname() });
        break;
      } catch (e) {
        if (!isPairingError(e, 'unreachable') || i === urls.length - 1) throw e;
      }
    }
    if (!redeemed) throw new CliError('no control plane URL given');
    const credential = {
      cloud_url: urls[0]!,
      ...(urls.length > 1 ? { cloud_urls: urls } : {}),
      token: redeemed.credential.token,
      credential_id: redeemed.credential.credential_id,
      workstation_id: redeemed.workstation.id,
      display_name: redeemed.workstation.display_name,
      connected_at: new Date().toISOString(),
    };
    const path = await saveCredential(credential);

    const client = new ControlPlaneClient({ url, token: credential.token });
    await client.registerWorkstation({
      display_name: credential.display_name,
      hostname: hostname(),
      ...hostCapacity(),
      runtimes: [],
      agent_version: this.config.version,
      listening: false,
    });

    this.log(`Paired as ${credential.display_name} (workstation ${credential.workstation_id}).`);
    this.log(`Credential saved to ${path} (mode 0600).`);
    this.log('Next: start the agent so runs can reach this machine:');
    this.log('  runt workstation run --runtime process   (or docker, podman)');
    return {
      workstation_id: credential.workstation_id,
      display_name: credential.display_name,
      credential_path: path,
      cloud_url: urls[0]!,
      ...(urls.length > 1 ? { cloud_urls: urls } : {}),
    };
  }
}

async function promptForCode(): Promise<string> {
  if (!process.stdin.isTTY)
    throw new CliError('missing --code: no terminal to prompt for the pairing code on');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return (await rl.question('Pairing code (XXXX-XXXX-XXXX): ')).trim();
  } finally {
    rl.close();
  }
}
