import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

export const RUNT_BIN = fileURLToPath(new URL('../bin/run.js', import.meta.url));

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI as a subprocess, with no terminal on stdin, as a script or CI would. */
export async function runt(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  const r = await execa('node', [RUNT_BIN, ...args], {
    env: {
      ...process.env,
      RUNT_CLOUD_URL: undefined,
      RUNT_CLOUD_TOKEN: undefined,
      RUNT_ADMIN_TOKEN: undefined,
      DEBUG: undefined,
      // colour as piped output gets it unless a test sets these
      FORCE_COLOR: undefined,
      NO_COLOR: undefined,
      ...env,
    },
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    timeout: 60_000,
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}
