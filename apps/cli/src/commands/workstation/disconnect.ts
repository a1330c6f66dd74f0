import { Command } from '@oclif/core';
import { credentialPath, deleteCredential } from '@runt/pairing';

export default class WorkstationDisconnect extends Command {
  static override summary = 'Forget this machine\'s workstation credential.';
  static override description = 'Deletes the local credential file. Revoke it on the control plane too (runt admin credentials revoke) to make the token useless everywhere.';
  static override examples = ['<%= config.bin %> workstation disconnect'];
  static override enableJsonFlag = true;

  async run() {
    const path = credentialPath();
    const removed = await deleteCredential();
    this.log(removed ? `Forgot the credential at ${path}.` : `No credential at ${path}; nothing to forget.`);
    return { removed, path };
  }
}
