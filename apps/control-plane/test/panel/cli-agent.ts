import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';

/** The built CLI (apps/cli): turbo.json builds it before this package's tests (`@runt/control-plane#test`). */
export const RUNT_BIN = fileURLToPath(new URL('../../../cli/bin/run.js', import.meta.url));

const cleanEnv = (env: Record<string, string>) => ({
  ...process.env,
  RUNT_CLOUD_URL: undefined,
  RUNT_CLOUD_TOKEN: undefined,
  RUNT_ADMIN_TOKEN: undefined,
  RUNT_STATE_DIR: undefined,
  DEBUG: undefined,
  ...env,
});

/**
 * Runs the connect line the panel showed, as an operator would paste it: `npx <package>
 * workstation connect URL --code CODE` is run as the built CLI with the same arguments.
 */
export async function runConnectLine(
  line: string,
  configDir: string,
  name: string,
): Promise<{ workstationId: string }> {
  if (!existsSync(RUNT_BIN)) throw new Error(`the CLI is not built (${RUNT_BIN}); run pnpm build`);
  const m = /^npx (\S+) (workstation connect \S+ --code \S+)$/.exec(line.trim());
  if (!m) throw new Error(`not a connect line: ${line}`);
  const args = m[2]!.split(' ');
  const r = await execa('node', [RUNT_BIN, ...args, '--name', name], {
    env: cleanEnv({ RUNT_CONFIG_DIR: configDir }),
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    timeout: 60_000,
  });
  if (r.exitCode !== 0) throw new Error(`connect failed (${r.exitCode}): ${r.stderr}`);
  const cred = JSON.parse(readFileSync(join(configDir, 'workstation.json'), 'utf8'));
  return { workstationId: cred.workstation_id as string };
}

/** `runt workstation run ARGS` for a paired config dir; its output is collected. */
export function startAgent(
  configDir: string,
  args: string[],
): { cli: ResultPromise; output: () => string; stop(): Promise<void> } {
  let out = '';
  const cli = execa('node', [RUNT_BIN, 'workstation', 'run', ...args], {
    env: cleanEnv({ RUNT_CONFIG_DIR: configDir, RUNT_LOG_LEVEL: 'info' }),
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    all: true,
  });
  cli.all?.on('data', (d: Buffer) => (out += String(d)));
  return {
    cli,
    output: () => out,
    async stop() {
      if (cli.exitCode === null) cli.kill('SIGTERM');
      await cli;
    },
  };
}
