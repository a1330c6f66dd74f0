import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { saveCredential } from '@runt/pairing';
import { mintToken } from '@runt/transport-auth';
import { RUNT_BIN, runt } from './cli.js';

/** `systemd-analyze [--user] verify UNIT`: exit code and what it said. */
function verify(path: string, user: boolean, runtimeDir: string): { code: number; out: string } {
  const r = spawnSync('systemd-analyze', [...(user ? ['--user'] : []), 'verify', path], {
    encoding: 'utf8',
    env: { ...process.env, XDG_RUNTIME_DIR: runtimeDir, SYSTEMD_LOG_LEVEL: 'notice' },
  });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

// `runt workstation service install|uninstall|status` (issue 12): the agent as a systemd unit,
// as `svc.sh install` does for Actions runners. systemd is not PID 1 here, so the unit is not
// started: it is written into a temp dir and checked with the real `systemd-analyze verify`, and
// the systemctl steps run a real binary that fails (/bin/false) or none at all.
describe('runt workstation service', () => {
  const root = mkdtempSync(join(tmpdir(), 'runt-service-'));
  const configDir = join(root, 'config');
  const runtimeDir = join(root, 'xdg-runtime');
  const token = mintToken('workstation');
  const secret = token.slice('rnt_ws_'.length);
  const env = (extra: Record<string, string> = {}) => ({
    RUNT_CONFIG_DIR: configDir,
    RUNT_SYSTEMD_UNIT_DIR: undefined,
    RUNT_SYSTEMCTL: '/bin/false',
    ...extra,
  });

  beforeAll(async () => {
    mkdirSync(runtimeDir, { mode: 0o700 });
    await saveCredential(
      {
        cloud_url: 'http://127.0.0.1:8787',
        token,
        credential_id: 'cred_1',
        workstation_id: 'ws_1',
        display_name: 'build-box',
        connected_at: new Date().toISOString(),
      },
      { configDir },
    );
  }, 240_000);

  it('writes a user unit that systemd-analyze verify accepts, without the token, and says systemctl failed', async () => {
    const dir = join(root, 'user-units');
    const r = await runt(
      [
        'workstation',
        'service',
        'install',
        '--unit-dir',
        dir,
        '--runtime',
        'process',
        '--max-runs',
        '2',
        '--prefetch',
        '2',
        '--labels',
        'zone=a b',
        '--shutdown-grace-ms',
        '60000',
      ],
      env(),
    );
    const path = join(dir, 'runt-agent.service');
    // systemctl (here /bin/false) failed: one line, the unit left written, the commands to run.
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      `runt: wrote ${path}, but systemctl --user daemon-reload failed (exit 1); once systemd is running, run: systemctl --user daemon-reload && systemctl --user enable --now runt-agent.service`,
    ]);
    const unit = readFileSync(path, 'utf8');
    expect(statSync(path).mode & 0o777).toBe(0o644);
    expect(statSync(join(configDir, 'workstation.json')).mode & 0o777).toBe(0o600);
    expect(unit).not.toContain(secret);
    expect(unit).not.toContain('RUNT_CLOUD_TOKEN');
    const node = realpathSync(process.execPath);
    expect(unit).toContain(
      `ExecStart=${node} ${realpathSync(RUNT_BIN)} workstation run --runtime process --max-runs 2 --prefetch 2 --labels "zone=a b" --shutdown-grace-ms 60000 --log-format pretty\n`,
    );
    expect(unit).toContain(`Environment=RUNT_CONFIG_DIR=${configDir}\n`);
    expect(unit).toContain(`WorkingDirectory=${configDir}\n`);
    expect(unit).toMatch(/^Restart=on-failure$/m);
    expect(unit).toMatch(/^RestartSec=5s$/m);
    expect(unit).toMatch(/^KillMode=mixed$/m);
    expect(unit).toMatch(/^TimeoutStopSec=100s$/m); // 60 s grace + 10 s stop + 30 s
    expect(unit).toMatch(/^After=network-online\.target$/m);
    expect(unit).toMatch(/^WantedBy=default\.target$/m);
    expect(unit).not.toMatch(/^User=/m);

    const ok = verify(path, true, runtimeDir);
    expect(ok.code, ok.out).toBe(0);
    // The check is real: the same unit without ExecStart fails it.
    const broken = join(root, 'broken', 'runt-agent.service');
    mkdirSync(join(root, 'broken'));
    writeFileSync(broken, unit.replace(/^ExecStart=.*\n/m, ''));
    const bad = verify(broken, true, runtimeDir);
    expect(bad.code, bad.out).not.toBe(0);
    expect(bad.out).toContain('ExecStart');

    // --print writes the same unit to stdout and nothing else.
    const printed = await runt(
      [
        'workstation',
        'service',
        'install',
        '--print',
        '--unit-dir',
        join(root, 'nowhere'),
        '--runtime',
        'process',
        '--max-runs',
        '2',
        '--prefetch',
        '2',
        '--labels',
        'zone=a b',
        '--shutdown-grace-ms',
        '60000',
      ],
      env(),
    );
    expect(printed.exitCode, printed.stderr).toBe(0);
    expect(printed.stdout).toBe(unit.trimEnd()); // execa drops the last newline
    expect(existsSync(join(root, 'nowhere'))).toBe(false);
  }, 240_000);

  it('writes a system unit with User= that verifies; --run-as needs --system', async () => {
    const dir = join(root, 'system-units');
    const user = execFileSync('id', ['-un'], { encoding: 'utf8' }).trim();
    const r = await runt(
      [
        'workstation',
        'service',
        'install',
        '--system',
        '--run-as',
        user,
        '--unit-dir',
        dir,
        '--unit',
        'runt-gpu',
        '--runtime',
        'process',
      ],
      env(),
    );
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('systemctl daemon-reload failed');
    const path = join(dir, 'runt-gpu.service');
    const unit = readFileSync(path, 'utf8');
    expect(unit).toMatch(new RegExp(`^User=${user}$`, 'm'));
    expect(unit).toMatch(/^WantedBy=multi-user\.target$/m);
    expect(unit).toMatch(/^TimeoutStopSec=70s$/m);
    const ok = verify(path, false, runtimeDir);
    expect(ok.code, ok.out).toBe(0);

    const wrong = await runt(
      ['workstation', 'service', 'install', '--run-as', user, '--print', '--runtime', 'process'],
      env(),
    );
    expect(wrong.exitCode).toBe(1);
    expect(wrong.stderr.trim()).toBe('runt: --run-as needs --system');
  }, 240_000);

  it('refuses without a stored credential, or one readable by others', async () => {
    const empty = join(root, 'unpaired');
    const none = await runt(
      ['workstation', 'service', 'install', '--print', '--runtime', 'process'],
      env({ RUNT_CONFIG_DIR: empty, RUNT_CLOUD_URL: 'http://127.0.0.1:8787', RUNT_CLOUD_TOKEN: token }),
    );
    expect(none.exitCode).toBe(1);
    expect(none.stderr.trim()).toBe(
      `runt: this machine is not paired (no ${join(empty, 'workstation.json')}): run runt workstation connect <url> --code XXXX-XXXX-XXXX first; the service reads that file, not RUNT_CLOUD_TOKEN`,
    );
    expect(none.stdout + none.stderr).not.toContain(secret);

    const loose = join(root, 'loose');
    await saveCredential(
      {
        cloud_url: 'http://127.0.0.1:8787',
        token,
        credential_id: 'cred_1',
        workstation_id: 'ws_1',
        display_name: 'build-box',
        connected_at: new Date().toISOString(),
      },
      { configDir: loose },
    );
    chmodSync(join(loose, 'workstation.json'), 0o644);
    const r = await runt(
      ['workstation', 'service', 'install', '--print', '--runtime', 'process'],
      env({ RUNT_CONFIG_DIR: loose }),
    );
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toBe(
      `runt: ${join(loose, 'workstation.json')} is readable by others (mode 644): chmod 600 it before installing the service`,
    );
  }, 240_000);

  it('status and uninstall: not installed, installed without systemd, systemctl failing', async () => {
    const dir = join(root, 'lifecycle');
    const args = ['--unit-dir', dir];
    const missing = await runt(['workstation', 'service', 'status', ...args], env());
    expect(missing.exitCode).toBe(1);
    expect(missing.stdout.trim()).toBe(
      `runt-agent.service: not installed (no ${join(dir, 'runt-agent.service')})`,
    );

    await runt(['workstation', 'service', 'install', ...args, '--runtime', 'process'], env());
    const path = join(dir, 'runt-agent.service');
    expect(existsSync(path)).toBe(true);
    const noSystemd = { RUNT_SYSTEMCTL: join(root, 'no-such-systemctl') };
    const said = await runt(['workstation', 'service', 'status', ...args], env(noSystemd));
    expect(said.exitCode).toBe(1);
    expect(said.stdout.trim()).toBe(
      `runt-agent.service: installed (${path}); cannot ask systemd (${join(root, 'no-such-systemctl')} not found)`,
    );

    // systemctl there but failing: the unit stays, one line says what to run.
    const failing = await runt(['workstation', 'service', 'uninstall', ...args], env());
    expect(failing.exitCode).toBe(1);
    expect(failing.stderr.trim()).toBe(
      `runt: systemctl --user disable --now runt-agent.service failed (exit 1); ${path} is left in place: run that, then runt workstation service uninstall again`,
    );
    expect(existsSync(path)).toBe(true);

    // No systemctl at all: nothing can be running the unit; the file goes.
    const gone = await runt(['workstation', 'service', 'uninstall', ...args], env(noSystemd));
    expect(gone.exitCode, gone.stderr).toBe(0);
    expect(existsSync(path)).toBe(false);
    const again = await runt(['workstation', 'service', 'uninstall', ...args], env(noSystemd));
    expect(again.exitCode).toBe(0);
    expect(again.stdout.trim()).toBe(`runt-agent.service is not installed (no ${path})`);
  }, 240_000);
});
