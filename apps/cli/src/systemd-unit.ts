import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CliError } from './errors.js';

/** Where the unit goes and which systemd manager runs it. */
export type ServiceScope = 'user' | 'system';

export interface UnitSpec {
  scope: ServiceScope;
  /** Absolute path of the node binary (its real path). */
  node: string;
  /** Absolute path of this CLI's `bin/run.js` (its real path). */
  cli: string;
  /** Arguments after `runt` (`workstation run --runtime process …`); never a secret. */
  args: string[];
  /** The directory of `workstation.json` (0600): the agent's credential, read at each start. */
  configDir: string;
  /** System units only: the user the agent runs as. */
  user?: string | undefined;
  /** The agent's shutdown grace and stop timeout: systemd must wait at least that long on stop. */
  shutdownGraceMs: number;
  stopTimeoutMs: number;
  /** Shown in `Description=`. */
  displayName: string;
}

/** Seconds systemd waits after SIGTERM before SIGKILL: the grace, the workloads' stop, then 30 s to report. */
export function stopTimeoutSec(spec: Pick<UnitSpec, 'shutdownGraceMs' | 'stopTimeoutMs'>): number {
  return Math.ceil((spec.shutdownGraceMs + spec.stopTimeoutMs) / 1000) + 30;
}

/**
 * The systemd unit that runs `runt workstation run` as a service, as `svc.sh install` does for
 * an Actions runner. The token is in neither the unit nor argv: `workstation run` reads the
 * 0600 `workstation.json` in `RUNT_CONFIG_DIR` and hands the token to the agent over a pipe.
 * `KillMode=mixed` sends SIGTERM to the CLI only, which forwards it to the agent once (a second
 * SIGTERM, from systemd signalling the whole group, would skip the runs' grace time);
 * `TimeoutStopSec` covers the grace and the workloads' stop before SIGKILL.
 *
 * @example
 * unitText({ scope: 'user', node: '/usr/bin/node', cli: '/opt/runt/bin/run.js', args: ['workstation', 'run', '--runtime', 'process'], configDir: '/home/me/.config/runt', shutdownGraceMs: 30_000, stopTimeoutMs: 10_000, displayName: 'build-box' });
 */
export function unitText(spec: UnitSpec): string {
  const lines = [
    '# Written by `runt workstation service install`; `runt workstation service uninstall` removes it.',
    '[Unit]',
    `Description=runt agent (workstation ${escapeValue(spec.displayName)})`,
    'After=network-online.target',
    'Wants=network-online.target',
    // Keep restarting however often it fails (a control plane down for an hour is not a reason to give up).
    'StartLimitIntervalSec=0',
    '',
    '[Service]',
    'Type=simple',
    ...(spec.scope === 'system' && spec.user ? [`User=${spec.user}`] : []),
    `Environment=${quoteArg(`RUNT_CONFIG_DIR=${spec.configDir}`, false)}`,
    `WorkingDirectory=${escapeValue(spec.configDir)}`,
    `ExecStart=${[spec.node, spec.cli, ...spec.args].map((a) => quoteArg(a)).join(' ')}`,
    'Restart=on-failure',
    'RestartSec=5s',
    '# systemd >= 254: back off from 5 s to 5 min between restarts (older versions ignore these two).',
    'RestartSteps=6',
    'RestartMaxDelaySec=5min',
    '# SIGTERM to the CLI only: it forwards one to the agent, which lets runs finish (shutdown grace).',
    'KillMode=mixed',
    'KillSignal=SIGTERM',
    `TimeoutStopSec=${stopTimeoutSec(spec)}s`,
    '',
    '[Install]',
    `WantedBy=${spec.scope === 'user' ? 'default.target' : 'multi-user.target'}`,
    '',
  ];
  return lines.join('\n');
}

/**
 * One ExecStart (or Environment) word as systemd parses it: bare when it is plain, else in
 * double quotes with `\` and `"` escaped; `%` (specifiers) is doubled, and `$` (ExecStart's
 * variables) too unless `dollar` is false.
 */
export function quoteArg(arg: string, dollar = true): string {
  let literal = arg.replace(/%/g, '%%');
  if (dollar) literal = literal.replace(/\$/g, '$$$$');
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(literal)) return literal;
  return `"${literal.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

function escapeValue(text: string): string {
  return text.replace(/%/g, '%%').replace(/[\r\n]/g, ' ');
}

/** The unit directory: `--unit-dir`, RUNT_SYSTEMD_UNIT_DIR, else the manager's own. */
export function unitDir(scope: ServiceScope, flag: string | undefined, env = process.env): string {
  const chosen = flag ?? (env.RUNT_SYSTEMD_UNIT_DIR?.trim() || undefined);
  if (chosen) return chosen;
  if (scope === 'system') return '/etc/systemd/system';
  return join(env.XDG_CONFIG_HOME?.trim() || join(homedir(), '.config'), 'systemd', 'user');
}

/** A unit name: letters, digits, `-_.@`; `.service` is added. */
export function unitFileName(name: string): string {
  const base = name.replace(/\.service$/, '');
  if (!/^[A-Za-z0-9_.@-]{1,200}$/.test(base))
    throw new CliError(`invalid --unit "${name}": use letters, digits, - _ . @`);
  return `${base}.service`;
}

/**
 * The real path of this CLI's `bin/run.js`. A copy in npx's cache is refused: npx may clean
 * it, and the service would then fail at its next start.
 */
export function cliBinPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === '@runt/cli')
      break;
    const up = dirname(dir);
    if (up === dir) throw new CliError('cannot find the @runt/cli package this command runs from');
    dir = up;
  }
  const bin = realpathSync(join(dir, 'bin', 'run.js'));
  if (/[/\\]_npx[/\\]/.test(bin))
    throw new CliError(
      `this runt runs from npx's cache (${dir}), which npx may clean: install it first (npm install -g @runt/cli) and run runt workstation service install from there`,
    );
  return bin;
}

/** The systemctl binary: RUNT_SYSTEMCTL (a test names another), else `systemctl` on PATH. */
export function systemctlBin(env = process.env): string {
  return env.RUNT_SYSTEMCTL?.trim() || 'systemctl';
}

export interface SystemctlResult {
  ok: boolean;
  /** `systemctl` could not be started at all (not installed). */
  missing: boolean;
  stdout: string;
  /** One line saying why it failed. */
  reason: string;
}

/** Runs `systemctl [--user] ARGS` (no shell) and says in one line why it failed. */
export function systemctl(scope: ServiceScope, args: string[], env = process.env): SystemctlResult {
  const bin = systemctlBin(env);
  const r = spawnSync(bin, [...(scope === 'user' ? ['--user'] : []), ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    return {
      ok: false,
      missing: code === 'ENOENT',
      stdout: '',
      reason: code === 'ENOENT' ? `${bin} not found` : r.error.message,
    };
  }
  const firstLine = (r.stderr || r.stdout || '').trim().split('\n')[0] ?? '';
  return {
    ok: r.status === 0,
    missing: false,
    stdout: r.stdout,
    reason: firstLine || `exit ${r.status ?? r.signal}`,
  };
}

/** `systemctl --user enable --now x.service` as a person types it. */
export function systemctlLine(scope: ServiceScope, args: string[]): string {
  return ['systemctl', ...(scope === 'user' ? ['--user'] : []), ...args].join(' ');
}
