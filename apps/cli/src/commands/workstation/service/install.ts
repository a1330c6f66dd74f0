import { chmod, mkdir, rename, stat, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { dirname, resolve } from 'node:path';
import { realpathSync } from 'node:fs';
import { Command, Flags } from '@oclif/core';
import { credentialPath, loadCredential } from '@runt/pairing';
import { CliError } from '../../../errors.js';
import { requireRootFor, serviceTarget, serviceTargetFlags } from '../../../service-target.js';
import { cliBinPath, systemctl, systemctlLine, unitText } from '../../../systemd-unit.js';
import WorkstationRun from '../run.js';

export default class WorkstationServiceInstall extends Command {
  static override summary =
    'Run the agent as a systemd service: started at login (--user) or boot (--system), restarted when it fails.';
  static override description =
    'Writes a systemd unit that runs `runt workstation run` with the flags given here, then `systemctl [--user] daemon-reload` and `enable --now`. The token stays in the 0600 workstation.json that runt workstation connect stored; the unit names only its directory (RUNT_CONFIG_DIR), never the token. Stopping the service is one SIGTERM to the agent: runs get the shutdown grace. When systemctl is missing or fails, the unit is left written and the command to run is printed (exit 1). --print writes the unit to stdout and touches nothing.';
  static override examples = [
    '<%= config.bin %> workstation service install --runtime process --max-runs 2',
    'sudo <%= config.bin %> workstation service install --system --run-as ci --runtime docker',
    '<%= config.bin %> workstation service install --runtime process --print',
  ];
  static override flags = {
    ...WorkstationRun.flags,
    ...serviceTargetFlags,
    'run-as': Flags.string({
      description: 'with --system: the user the agent runs as (default: SUDO_USER, else you)',
    }),
    print: Flags.boolean({ description: 'print the unit instead of installing it', aliases: ['dry-run'] }),
  };

  async run(): Promise<{ unit: string; path: string; started: boolean }> {
    const { flags } = await this.parse(WorkstationServiceInstall);
    const target = serviceTarget(flags);
    if (!flags.print) requireRootFor(target, 'installing');
    if (flags['run-as'] && target.scope !== 'system') throw new CliError('--run-as needs --system');

    // The credential the service will read: the stored file (RUNT_CLOUD_TOKEN in a unit would sit
    // in the service's environment, readable in /proc by what the agent runs as that user).
    const credFile = resolve(credentialPath());
    const credential = await loadCredential({ env: { RUNT_CONFIG_DIR: dirname(credFile) } }).catch(
      (e: Error) => {
        throw new CliError(e.message.split('\n')[0] ?? String(e));
      },
    );
    if (!credential)
      throw new CliError(
        `this machine is not paired (no ${credFile}): run runt workstation connect <url> --code XXXX-XXXX-XXXX first; the service reads that file, not RUNT_CLOUD_TOKEN`,
      );
    const mode = (await stat(credFile)).mode & 0o777;
    if ((mode & 0o077) !== 0)
      throw new CliError(
        `${credFile} is readable by others (mode ${mode.toString(8)}): chmod 600 it before installing the service`,
      );

    const text = unitText({
      scope: target.scope,
      node: realpathSync(process.execPath),
      cli: cliBinPath(),
      args: ['workstation', 'run', ...runArgs(flags)],
      configDir: dirname(credFile),
      user:
        target.scope === 'system'
          ? (flags['run-as'] ?? (process.env.SUDO_USER?.trim() || userInfo().username))
          : undefined,
      shutdownGraceMs: flags['shutdown-grace-ms'] ?? 30_000,
      stopTimeoutMs: flags['stop-timeout-ms'] ?? 10_000,
      displayName: flags.name ?? (credential.display_name || credential.workstation_id),
    });
    if (flags.print) {
      process.stdout.write(text);
      return { unit: target.unit, path: target.path, started: false };
    }

    await mkdir(target.dir, { recursive: true });
    const tmp = `${target.path}.${process.pid}.tmp`;
    await writeFile(tmp, text, { mode: 0o644 });
    await chmod(tmp, 0o644); // exact mode whatever the umask
    await rename(tmp, target.path);

    const steps = [['daemon-reload'], ['enable', '--now', target.unit]];
    for (const [i, step] of steps.entries()) {
      const r = systemctl(target.scope, step);
      if (!r.ok) {
        const todo = steps
          .slice(i)
          .map((s) => systemctlLine(target.scope, s))
          .join(' && ');
        throw new CliError(
          `wrote ${target.path}, but ${systemctlLine(target.scope, step)} ${r.missing ? 'could not run' : 'failed'} (${r.reason}); once systemd is running, run: ${todo}`,
        );
      }
    }
    this.log(`installed ${target.unit} (${target.path}): enabled and started`);
    this.log(`see it with: runt workstation service status${target.scope === 'system' ? ' --system' : ''}`);
    if (target.scope === 'user')
      this.log(
        `to keep it running when you are logged out (and start it at boot): loginctl enable-linger ${userInfo().username}`,
      );
    return { unit: target.unit, path: target.path, started: true };
  }
}

type RunFlags = Record<string, unknown>;

/**
 * The `runt workstation run` flags given to `service install`, as arguments for the unit's
 * ExecStart (flags are never secrets). Under systemd stdout is the journal, not a terminal: the
 * log is pretty unless `--log-format json` is asked for, since a person reads `journalctl`.
 */
export function runArgs(flags: RunFlags): string[] {
  const args: string[] = [];
  for (const [name, def] of Object.entries(WorkstationRun.flags)) {
    const value = flags[name];
    if (value === undefined) continue;
    if (def.type === 'boolean') {
      const d = def as { allowNo?: boolean; default?: unknown };
      if (value === true && d.default !== true) args.push(`--${name}`);
      if (value === false && d.allowNo) args.push(`--no-${name}`);
      continue;
    }
    for (const v of Array.isArray(value) ? value : [value]) args.push(`--${name}`, String(v));
  }
  if (flags['log-format'] === undefined) args.push('--log-format', 'pretty');
  return args;
}
