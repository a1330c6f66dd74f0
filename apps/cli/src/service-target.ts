import { join } from 'node:path';
import { Flags } from '@oclif/core';
import { CliError } from './errors.js';
import { unitDir, unitFileName, type ServiceScope } from './systemd-unit.js';

/** The flags every `runt workstation service` command takes: which unit, in which manager. */
export const serviceTargetFlags = {
  user: Flags.boolean({
    description:
      "the user's systemd (default; ~/.config/systemd/user; runs while you are logged in, or always with loginctl enable-linger)",
    exclusive: ['system'],
  }),
  system: Flags.boolean({
    description: 'the system manager (/etc/systemd/system; needs root; starts at boot)',
    exclusive: ['user'],
  }),
  unit: Flags.string({ description: 'unit name (default runt-agent): one per workstation on this machine' }),
  'unit-dir': Flags.string({
    description: 'write the unit here instead (default: RUNT_SYSTEMD_UNIT_DIR, else the manager’s directory)',
  }),
};

export interface ServiceTarget {
  scope: ServiceScope;
  /** `runt-agent.service`. */
  unit: string;
  dir: string;
  /** The unit file. */
  path: string;
  /** True when the directory is the manager's own (no --unit-dir, no RUNT_SYSTEMD_UNIT_DIR). */
  managed: boolean;
}

/** Resolves the scope, unit name and unit file of a service command. */
export function serviceTarget(flags: {
  system?: boolean | undefined;
  unit?: string | undefined;
  'unit-dir'?: string | undefined;
}): ServiceTarget {
  const scope: ServiceScope = flags.system ? 'system' : 'user';
  const unit = unitFileName(flags.unit ?? 'runt-agent');
  const dir = unitDir(scope, flags['unit-dir']);
  const managed = flags['unit-dir'] === undefined && !process.env.RUNT_SYSTEMD_UNIT_DIR?.trim();
  return { scope, unit, dir, path: join(dir, unit), managed };
}

/** System units are written and started by root. */
export function requireRootFor(target: ServiceTarget, what: string): void {
  if (target.scope === 'system' && target.managed && process.getuid?.() !== 0)
    throw new CliError(`${what} a system unit needs root: run it with sudo (or use --user)`);
}
