import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Config } from '@oclif/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runt } from './cli.js';
import { eventually, startRunsHarness, terminal, type RunsHarness } from './runs-harness.js';

/** The one key style of every `--json` output (issue 12): snake_case, digits allowed. */
const SNAKE = /^[a-z0-9]+(_[a-z0-9]+)*$/;
/**
 * Maps whose keys the user chose, not the CLI: a run's or command's `env` (`--env GREETING=hi`)
 * and workstation or placement `labels` (`--labels gpu=a100`). Their keys are exempt; everything
 * inside them is still checked.
 */
const USER_MAPS = new Set(['env', 'labels']);

/** Every object key below `value` that is not snake_case, as a JSON path. */
export function keysNotSnake(value: unknown, path = '$'): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => keysNotSnake(v, `${path}[${i}]`));
  if (value === null || typeof value !== 'object') return [];
  const userMap = USER_MAPS.has(path.slice(path.lastIndexOf('.') + 1));
  return Object.entries(value).flatMap(([k, v]) => [
    ...(userMap || SNAKE.test(k) ? [] : [`${path}.${k}`]),
    ...keysNotSnake(v, `${path}.${k}`),
  ]);
}

describe('keysNotSnake', () => {
  it('names every camelCase key by path, skipping only the keys of user maps', () => {
    expect(
      keysNotSnake({
        run_id: 'x',
        env: { GREETING: 'hi' },
        placement: { labels: { 'gpu.Vendor': 'x' } },
        items: [{ liveState: 'running', nested: { sourcePath: '/' } }],
        runtime_info: { startedAt: 't' },
      }),
    ).toEqual(['$.items[0].liveState', '$.items[0].nested.sourcePath', '$.runtime_info.startedAt']);
  });
});

// Runs every command that takes --json against a real control plane with a real agent (and the
// workspace commands on the process runtime), and checks every key of what each prints.
describe('every --json output is snake_case', () => {
  let h: RunsHarness;
  const outputs = new Map<string, unknown>();
  let env: Record<string, string>;

  /** Runs `runt <topic> <command> --json <rest>`, expects exit 0 and records the parsed output under the command id. */
  async function json(args: string[], extra: Record<string, string> = {}): Promise<any> {
    // --json right after the command's name: after a `--` it would be the run's command.
    const r = await runt([...args.slice(0, 2), '--json', ...args.slice(2)], { ...env, ...extra });
    expect(r.exitCode, `runt ${args.join(' ')}: ${r.stderr}`).toBe(0);
    const parsed: unknown = JSON.parse(r.stdout);
    const id = args.slice(0, 2).join(':');
    outputs.set(`${id} ${outputs.size}`, parsed);
    return parsed;
  }

  beforeAll(async () => {
    h = await startRunsHarness('pglite');
    await h.startAgent('json-a', ['--runtime', 'process', '--labels', 'Pool=blue']);
    env = { ...h.adminEnv, RUNT_CONFIG_DIR: join(h.root, 'operator') };
  }, 300_000);
  afterAll(async () => h?.close());

  it('admin and workstation commands', async () => {
    const tokenFile = join(h.root, 'admin-token');
    writeFileSync(tokenFile, h.adminEnv.RUNT_ADMIN_TOKEN!, { mode: 0o600 });
    await json(['admin', 'login', '--url', h.cp.url, '--token-file', tokenFile]);
    const { pairing } = await json(['admin', 'pairing-code']);
    const box = { RUNT_CONFIG_DIR: join(h.root, 'box') };
    const connected = await json(
      ['workstation', 'connect', h.cp.url, '--code', pairing.code, '--name', 'box'],
      box,
    );
    await json(['workstation', 'status']);
    await json(['admin', 'drain', connected.workstation_id]);
    await json(['admin', 'undrain', connected.workstation_id]);
    // Credentials last: revoking and disconnecting end the workstation "box".
    const { credentials } = await json(['admin', 'credentials']);
    const boxCredential = credentials.find((c: { display_name: string }) => c.display_name === 'box');
    await json(['admin', 'revoke', boxCredential.id]);
    await json(['workstation', 'disconnect'], box);
  }, 300_000);

  it('run commands: one run that lives (exec, show, cancel) and one followed to its end', async () => {
    const { run } = await json([
      'run',
      'submit',
      '--runtime',
      'process',
      '--env',
      'GREETING=hi',
      '--label',
      'Pool=blue',
      '--ready-when',
      'up',
      '--retry',
      'nonzero-exit',
      '--',
      '/bin/sh',
      '-c',
      'echo up; while :; do sleep 0.2; done',
    ]);
    await eventually(async () => (await h.admin.getRun(run.id)).run.status === 'running', 'running');
    await json(['run', 'exec', run.id, '--', '/bin/sh', '-c', 'echo in-exec']);
    await json(['run', 'exec', '--detach', run.id, '--', '/bin/true']);
    await json(['run', 'show', run.id]);
    await json(['run', 'cancel', run.id]);
    await terminal(h.admin, run.id);
    await json(['run', 'submit', '--runtime', 'process', '--follow', '--', '/bin/sh', '-c', 'echo done']);
    await json(['run', 'list', '--workstation', 'json-a']);
  }, 300_000);

  it('workspace commands, on the process runtime', async () => {
    const sources = join(h.root, 'ws-src');
    mkdirSync(sources);
    writeFileSync(join(sources, 'marker.txt'), 'x\n');
    const local = { RUNT_CONFIG_DIR: mkdtempSync(join(h.root, 'ws-config-')) };
    await json(['workspace', 'init', sources, '--runtime', 'process', '--name', 'json-ws'], local);
    await json(['workspace', 'list'], local);
    await json(['workspace', 'stop', 'json-ws'], local);
    await json(['workspace', 'start', 'json-ws'], local);
    await json(['workspace', 'remove', 'json-ws'], local);
  }, 300_000);

  it('ran every command that takes --json, and every key it printed is snake_case', async () => {
    // Every command that takes --json was run above (a new one must be added here).
    const config = await Config.load(fileURLToPath(new URL('..', import.meta.url)));
    const withJson = config.commands
      .filter((c) => c.flags.json !== undefined)
      .map((c) => c.id)
      .sort();
    const ran = [...new Set([...outputs.keys()].map((k) => k.split(' ')[0]))].sort();
    expect(ran).toEqual(withJson);

    const bad = [...outputs].flatMap(([id, out]) =>
      keysNotSnake(out).map((p) => `${id.split(' ')[0]}: ${p}`),
    );
    expect(bad).toEqual([]);
  });
});
