import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

/** Directory of every workspace package, by name. */
function workspacePackages(): Map<string, string> {
  const byName = new Map<string, string>();
  for (const root of ['packages', 'apps']) {
    for (const dir of readdirSync(join(REPO, root))) {
      const file = join(REPO, root, dir, 'package.json');
      if (existsSync(file)) byName.set(JSON.parse(readFileSync(file, 'utf8')).name, dirname(file));
    }
  }
  return byName;
}

/** The named packages and every workspace package they depend on at runtime. */
function runtimeClosure(names: string[]): string[] {
  const all = workspacePackages();
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const pkg = JSON.parse(readFileSync(join(all.get(name)!, 'package.json'), 'utf8'));
    for (const dep of Object.keys(pkg.dependencies ?? {})) if (all.has(dep)) visit(dep);
  };
  names.forEach(visit);
  return [...seen].map((n) => all.get(n)!);
}

/**
 * What a new user does: install the published packages (here: `pnpm pack` tarballs, so
 * `workspace:` and `catalog:` are rewritten as on publish) into an empty directory, start the
 * control plane, and paste the connect line it prints, exactly as printed.
 */
describe('packed tarballs in an empty directory', () => {
  const packDir = mkdtempSync(join(tmpdir(), 'runt-pack-'));
  const installDir = mkdtempSync(join(tmpdir(), 'runt-install-'));
  const dataDir = join(installDir, '.runt');
  const configDir = join(installDir, 'config');
  let cp: ResultPromise | undefined;

  beforeAll(async () => {
    for (const dir of runtimeClosure(['@runt/cli', '@runt/control-plane'])) {
      await execa('pnpm', ['pack', '--pack-destination', packDir], { cwd: dir });
    }
    const tarballs = readdirSync(packDir).map((f) => join(packDir, f));
    await execa('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', ...tarballs], {
      cwd: installDir,
      env: { npm_config_yes: 'false' },
    });
  }, 600_000);

  afterAll(() => {
    cp?.kill('SIGKILL');
  });

  it('ships oclif.manifest.json and does not pull the conformance suite (vitest) into an install', () => {
    expect(existsSync(join(installDir, 'node_modules/@runt/cli/oclif.manifest.json'))).toBe(true);
    expect(existsSync(join(installDir, 'node_modules/vitest'))).toBe(false);
  });

  it('the connect line the control plane prints pairs this machine when pasted as printed', async () => {
    cp = execa(join(installDir, 'node_modules/.bin/runt-control-plane'), [], {
      cwd: installDir,
      env: { RUNT_PORT: '0', RUNT_DATA_DIR: dataDir, RUNT_ADMIN_TOKEN: undefined, DATABASE_URL: undefined },
      reject: false,
      stdin: 'ignore',
    });
    let stderr = '';
    const line = await new Promise<string>((resolve, reject) => {
      cp!.stderr!.on('data', (d: Buffer) => {
        stderr += String(d);
        const m = /^ {2}(npx .*)$/m.exec(stderr);
        if (m) resolve(m[1]!);
      });
      cp!.once('exit', () => reject(new Error(`control plane exited: ${stderr}`)));
    });
    expect(line).toMatch(
      /^npx @runt\/cli workstation connect http:\/\/127\.0\.0\.1:\d+ --code [2-9A-Z-]{14}$/,
    );

    const connect = await execa('sh', ['-c', line], {
      cwd: installDir,
      env: { RUNT_CONFIG_DIR: configDir, npm_config_yes: 'false', npm_config_offline: 'true' },
      reject: false,
      stdin: 'ignore',
    });
    expect(connect.exitCode, String(connect.stderr)).toBe(0);
    expect(String(connect.stdout)).toMatch(/^Paired as \S+ \(workstation [^)]+\)\./);
    expect(existsSync(join(configDir, 'workstation.json'))).toBe(true);

    const status = await execa(join(installDir, 'node_modules/.bin/runt'), ['workstation', 'status'], {
      env: { RUNT_CONFIG_DIR: configDir },
      reject: false,
    });
    expect(status.exitCode, String(status.stderr)).toBe(0);
    cp.kill('SIGTERM');
    expect((await cp).exitCode).toBe(0);
    cp = undefined;
  });
});
