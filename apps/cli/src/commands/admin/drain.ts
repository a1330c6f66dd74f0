import { Command } from '@oclif/core';
import type { Workstation } from '@runt/protocol';
import { adminClient, adminFlags, workstationIdArg, type AdminFlags } from '../../config.js';
import { resolveWorkstationId } from '../../workstation-ref.js';

export default class AdminDrain extends Command {
  static override summary =
    'Drain a workstation: nothing new is offered to it; its agent finishes the runs it holds and exits 0.';
  static override description =
    'Runs offered to it but not yet claimed go back to the queue. Draining ends when the agent stops listening; the next `runt workstation run` on that machine takes runs again.';
  static override examples = [
    '<%= config.bin %> admin drain build-box --url http://127.0.0.1:8787',
    '<%= config.bin %> admin drain ws_0b6c… --url http://127.0.0.1:8787',
  ];
  static override enableJsonFlag = true;
  static override args = { id: workstationIdArg };
  static override flags = { ...adminFlags };

  async run() {
    const { args, flags } = await this.parse(AdminDrain);
    return setDrain(this, 'drain', args.id, flags);
  }
}

/**
 * `admin drain` and `admin undrain` in one place: asks the control plane, prints one line, and
 * returns what `--json` prints.
 */
export async function setDrain(
  cmd: Command,
  action: 'drain' | 'undrain',
  workstationId: string,
  flags: AdminFlags,
): Promise<{ workstation: Workstation }> {
  const client = await adminClient(flags);
  const id = await resolveWorkstationId(client, workstationId, 'workstation');
  const { workstation } =
    action === 'drain' ? await client.drainWorkstation(id) : await client.undrainWorkstation(id);
  const verb = action === 'drain' ? 'Draining' : 'Undrained';
  cmd.log(`${verb} ${workstation.id} (${workstation.display_name}): ${workstation.status}.`);
  return { workstation };
}
