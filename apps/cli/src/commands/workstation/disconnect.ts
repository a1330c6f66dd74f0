import { Command, Flags } from '@oclif/core';
import { credentialPath, deleteCredential, loadCredential } from '@runt/pairing';
import { ControlPlaneClient } from '@runt/protocol';

export default class WorkstationDisconnect extends Command {
  static override summary =
    "Forget this machine's workstation credential (--revoke: end it on the control plane too).";
  static override description =
    'Deletes the local credential file. Without --revoke the credential stays valid on the control plane until an operator revokes it (runt admin revoke <id>), like a removed runner whose token was not deleted.';
  static override examples = [
    '<%= config.bin %> workstation disconnect',
    '<%= config.bin %> workstation disconnect --revoke',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    revoke: Flags.boolean({ description: 'revoke the credential on the control plane before forgetting it' }),
  };

  async run() {
    const { flags } = await this.parse(WorkstationDisconnect);
    const path = credentialPath();
    const credential = await loadCredential().catch(() => undefined);
    let revoked = false;
    if (flags.revoke && credential?.cloud_url && credential.token) {
      await new ControlPlaneClient({
        url: credential.cloud_url,
        token: credential.token,
      }).revokeOwnCredential();
      revoked = true;
    }
    const removed = await deleteCredential();
    if (!removed) this.log(`No credential at ${path}; nothing to forget.`);
    else if (revoked)
      this.log(
        `Revoked credential ${credential!.credential_id} on ${credential!.cloud_url} and forgot it (${path}).`,
      );
    else {
      this.log(`Forgot the credential at ${path}.`);
      if (credential?.credential_id) {
        this.log(
          `It is still valid on ${credential.cloud_url} until revoked: runt workstation disconnect --revoke next time, or an operator runs runt admin revoke ${credential.credential_id}.`,
        );
      }
    }
    return { removed, revoked, path };
  }
}
