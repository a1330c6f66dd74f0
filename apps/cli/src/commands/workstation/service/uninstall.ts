import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Command } from '@oclif/core';
import { CliError } from '../../../errors.js';
import { requireRootFor, serviceTarget, serviceTargetFlags } from '../../../service-target.js';
import { systemctl, systemctlLine } from '../../../systemd-unit.js';

export default class WorkstationServiceUninstall extends Command {
  static override summary = 'Stop the agent service and remove its unit (the credential stays).';
  static override description =
    'systemctl [--user] disable --now, then removes the unit file and reloads systemd. The stop is one SIGTERM: held runs get the shutdown grace. When systemctl fails the unit is left in place and the command to run is printed (exit 1); when there is no systemctl at all nothing can be running it, and the file is removed.';
  static override examples = [
    '<%= config.bin %> workstation service uninstall',
    'sudo <%= config.bin %> workstation service uninstall --system',
  ];
  static override flags = { ...serviceTargetFlags };

  async run(): Promise<{ unit: string; path: string; removed: boolean }> {
    const { flags } = await this.parse(WorkstationServiceUninstall);
    const target = serviceTarget(flags);
    if (!existsSync(target.path)) {
      this.log(`${target.unit} is not installed (no ${target.path})`);
      return { unit: target.unit, path: target.path, removed: false };
    }
    requireRootFor(target, 'removing');
    const stop = systemctl(target.scope, ['disable', '--now', target.unit]);
    if (!stop.ok && !stop.missing)
      throw new CliError(
        `${systemctlLine(target.scope, ['disable', '--now', target.unit])} failed (${stop.reason}); ${target.path} is left in place: run that, then runt workstation service uninstall again`,
      );
    await rm(target.path, { force: true });
    if (stop.missing) {
      this.log(`removed ${target.path} (${stop.reason}: nothing was running it)`);
    } else {
      systemctl(target.scope, ['daemon-reload']);
      this.log(`stopped and disabled ${target.unit}; removed ${target.path}`);
    }
    return { unit: target.unit, path: target.path, removed: true };
  }
}
