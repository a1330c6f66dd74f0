import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from '@lydell/node-pty';
import { describe, expect, it } from 'vitest';
import { RUNT_BIN, runt } from './cli.js';

const PRIVATE_DOCKER = '/run/runt-docker/docker.sock';
const dockerHost =
  process.env.DOCKER_HOST ?? (existsSync(PRIVATE_DOCKER) ? `unix://${PRIVATE_DOCKER}` : undefined);
const TEST_IMAGE = 'runt-test/busybox:latest';

/** Types into `runt workspace terminal` through a real PTY and waits for `expected` on screen. */
async function typeInTerminal(
  env: Record<string, string | undefined>,
  name: string,
  input: string,
  expected: string,
): Promise<{ screen: string; exitCode: number }> {
  const pty = spawn('node', [RUNT_BIN, 'workspace', 'terminal', name], {
    cols: 100,
    rows: 30,
    env: Object.fromEntries(
      Object.entries({ ...process.env, ...env }).filter((e): e is [string, string] => e[1] !== undefined),
    ),
  });
  let screen = '';
  pty.onData((d) => (screen += d));
  const exited = new Promise<number>((resolve) => pty.onExit(({ exitCode }) => resolve(exitCode)));
  try {
    for (let i = 0; i < 400 && !screen.includes(expected); i++) {
      if (i === 20 || i === 100) pty.write(input); // type once the shell is likely up; retype once if the first was too early
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(screen).toContain(expected);
    pty.write('exit 7\r');
    return { screen, exitCode: await exited };
  } finally {
    pty.kill();
  }
}

const runtimes: Array<{ runtime: string; extra: string[]; env: Record<string, string | undefined> }> = [
  { runtime: 'process', extra: [], env: {} },
  { runtime: 'docker', extra: ['--image', TEST_IMAGE], env: { DOCKER_HOST: dockerHost } },
];

describe.each(runtimes)('runt workspace on the $runtime runtime', ({ runtime, extra, env: runtimeEnv }) => {
  it('init → list → stop → start → terminal (through a PTY) → remove', async () => {
    const root = mkdtempSync(join(tmpdir(), `runt-wsp-${runtime}-`));
    const sources = join(root, 'demo-src');
    mkdirSync(sources);
    writeFileSync(join(sources, 'marker.txt'), 'from-the-sources\n');
    const env = { RUNT_CONFIG_DIR: join(root, 'config'), ...runtimeEnv };

    const init = await runt(
      ['workspace', 'init', sources, '--runtime', runtime, '--name', `demo-${runtime}`, ...extra],
      env,
    );
    expect(init.exitCode, init.stderr).toBe(0);
    expect(init.stdout).toContain(`Workspace demo-${runtime}`);

    const list = await runt(['workspace', 'list', '--json'], env);
    expect(list.exitCode, list.stderr).toBe(0);
    const [ws] = JSON.parse(list.stdout).workspaces;
    expect(ws).toMatchObject({
      name: `demo-${runtime}`,
      runtime,
      state: 'running',
      live_state: 'running',
      source_path: sources,
    });
    expect(ws.runtime_info).toMatchObject({ state: 'running' });

    const stop = await runt(['workspace', 'stop', `demo-${runtime}`], env);
    expect(stop.exitCode, stop.stderr).toBe(0);
    expect(JSON.parse((await runt(['workspace', 'list', '--json'], env)).stdout).workspaces[0]).toMatchObject(
      { state: 'stopped', live_state: 'stopped' },
    );

    // terminal starts the stopped workspace and gives a shell in the sources
    const { exitCode, screen } = await typeInTerminal(
      env,
      `demo-${runtime}`,
      'cat marker.txt; echo "answer=$((6*7))"\r',
      'answer=42',
    );
    expect(screen).toContain('from-the-sources');
    expect(exitCode).toBe(7);
    expect(
      JSON.parse((await runt(['workspace', 'list', '--json'], env)).stdout).workspaces[0].live_state,
    ).toBe('running');

    const start = await runt(['workspace', 'start', ws.id], env);
    expect(start.exitCode, start.stderr).toBe(0);

    const remove = await runt(['workspace', 'remove', `demo-${runtime}`], env);
    expect(remove.exitCode, remove.stderr).toBe(0);
    expect(JSON.parse((await runt(['workspace', 'list', '--json'], env)).stdout).workspaces).toEqual([]);
  });
});

describe('runt workspace errors', () => {
  const env = { RUNT_CONFIG_DIR: join(mkdtempSync(join(tmpdir(), 'runt-wsp-err-')), 'config') };

  it('requires a runtime and lists the choices', async () => {
    const r = await runt(['workspace', 'init', tmpdir()], { ...env, RUNT_DEFAULT_RUNTIME: undefined });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toBe(
      'runt: missing --runtime (or RUNT_DEFAULT_RUNTIME): choose one of docker, podman, process',
    );
  });

  it('names the known runtimes for an unknown one', async () => {
    const r = await runt(['workspace', 'init', tmpdir(), '--runtime', 'vmware'], env);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toBe('runt: unknown runtime "vmware"; known runtimes: docker, podman, process');
  });

  it('says which workspace is missing', async () => {
    const r = await runt(['workspace', 'stop', 'ghost'], env);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toBe('runt: no workspace named "ghost" (runt workspace list shows them)');
  });

  it('RUNT_DEFAULT_RUNTIME stands in for --runtime; parallel inits never corrupt the registry', async () => {
    const root = mkdtempSync(join(tmpdir(), 'runt-wsp-par-'));
    const penv = { RUNT_CONFIG_DIR: join(root, 'config'), RUNT_DEFAULT_RUNTIME: 'process' };
    const names = ['a', 'b', 'c', 'd'];
    for (const n of names) mkdirSync(join(root, n));
    const results = await Promise.all(names.map((n) => runt(['workspace', 'init', join(root, n)], penv)));
    for (const r of results) expect(r.exitCode, r.stderr).toBe(0);
    const listed = JSON.parse((await runt(['workspace', 'list', '--json'], penv)).stdout)
      .workspaces.map((w: { name: string }) => w.name)
      .sort();
    expect(listed).toEqual(names);
    await Promise.all(names.map((n) => runt(['workspace', 'remove', n], penv)));
  });
});
