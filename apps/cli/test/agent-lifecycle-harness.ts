import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { expect } from 'vitest';
import type { ControlPlaneClient } from '@runt/protocol';
import { RUNT_BIN, runt } from './cli.js';
import { eventually, type TestAgent } from './runs-harness.js';

export interface Paired {
  configDir: string;
  workstationId: string;
  token: string;
}

/** Pairs a workstation with the CLI (`runt admin pairing-code`, `runt workstation connect`). */
export async function pairWithCli(
  url: string,
  adminEnv: Record<string, string>,
  root: string,
  name: string,
): Promise<Paired> {
  const code = await runt(['admin', 'pairing-code', '--json'], adminEnv);
  expect(code.exitCode, code.stderr).toBe(0);
  const configDir = join(root, name, 'config');
  const r = await runt(
    ['workstation', 'connect', url, '--code', JSON.parse(code.stdout).pairing.code, '--name', name],
    { RUNT_CONFIG_DIR: configDir },
  );
  expect(r.exitCode, r.stderr).toBe(0);
  const cred = JSON.parse(readFileSync(join(configDir, 'workstation.json'), 'utf8'));
  return { configDir, workstationId: cred.workstation_id as string, token: cred.token as string };
}

/**
 * Starts `runt workstation run ARGS` for an already paired workstation (its config dir, hence
 * its state dir: a second start finds the first one's runs) and waits until it is registered
 * and listening.
 */
export async function launchAgent(
  admin: ControlPlaneClient,
  name: string,
  paired: Paired,
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<TestAgent> {
  let out = '';
  const cli = execa('node', [RUNT_BIN, 'workstation', 'run', ...args], {
    env: {
      ...process.env,
      RUNT_CLOUD_URL: undefined,
      RUNT_CLOUD_TOKEN: undefined,
      RUNT_ADMIN_TOKEN: undefined,
      RUNT_STATE_DIR: undefined,
      RUNT_CONFIG_DIR: paired.configDir,
      RUNT_LOG_LEVEL: 'info',
      ...opts.env,
    },
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    all: true,
  });
  cli.all?.on('data', (d: Buffer) => (out += String(d)));
  // The agent logs "agent running" once it has registered (and re-adopted what it found).
  await eventually(
    async () => out.includes('agent running') || cli.exitCode !== null,
    `agent ${name} to start (output: ${out})`,
    opts.timeoutMs,
  );
  expect(cli.exitCode ?? undefined, out).toBeUndefined();
  await eventually(
    async () => {
      const w = (await admin.listWorkstations()).workstations.find((x) => x.id === paired.workstationId);
      return w?.listening && w.status === 'online';
    },
    `agent ${name} online (output: ${out})`,
    opts.timeoutMs,
  );
  const children = readFileSync(`/proc/${cli.pid}/task/${cli.pid}/children`, 'utf8')
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);
  expect(children).toHaveLength(1);
  return {
    name,
    configDir: paired.configDir,
    workstationId: paired.workstationId,
    token: paired.token,
    cli,
    agentPid: children[0]!,
    output: () => out,
  };
}

/** Status of a run. */
export async function statusOf(admin: ControlPlaneClient, id: string) {
  return (await admin.getRun(id)).run;
}
