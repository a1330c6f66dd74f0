import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Flags } from '@oclif/core';
import { requireCredential } from '../../config.js';
import { CliError } from '../../errors.js';

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];

export default class WorkstationRun extends Command {
  static override summary = 'Run the agent: take runs from the control plane and execute them in the runtimes you name.';
  static override description =
    'Starts the runt-agent binary of the installed @runt/agent with this machine\'s credential in its environment (RUNT_CLOUD_URL / RUNT_CLOUD_TOKEN win over the stored file; the token never goes into argv). Signals are forwarded; SIGTERM lets runs finish up to the grace time, a second one stops them.';
  static override examples = [
    '<%= config.bin %> workstation run --runtime process',
    '<%= config.bin %> workstation run --runtime docker --runtime process --max-runs 4 --labels gpu=a100',
    '<%= config.bin %> workstation run --runtime docker --once',
  ];
  static override flags = {
    runtime: Flags.string({ description: 'runtime to offer (repeatable): process, docker, podman (default RUNT_DEFAULT_RUNTIME)', multiple: true }),
    'max-runs': Flags.integer({ description: 'runs at once (default 1)', min: 1 }),
    labels: Flags.string({ description: 'workstation label k=v (repeatable, or comma-separated)', multiple: true, aliases: ['label'] }),
    once: Flags.boolean({ description: 'take one run, finish it and exit' }),
    link: Flags.boolean({ description: 'hold the WebSocket link (--no-link: poll only)', allowNo: true, default: true }),
    'lease-ms': Flags.integer({ description: 'lease length per run in ms (default 30000; RUNT_LEASE_MS)', min: 2000 }),
    'poll-interval-ms': Flags.integer({ description: 'polling period while the link is down (default 2000)', min: 50 }),
    'shutdown-grace-ms': Flags.integer({ description: 'how long runs may finish after SIGTERM (default 30000)', min: 0 }),
    'stop-timeout-ms': Flags.integer({ description: 'polite-signal-to-kill time when stopping a workload (default 10000)', min: 0 }),
    'state-dir': Flags.string({ description: 'per-run state files (default RUNT_STATE_DIR, else <config dir>/state)' }),
    name: Flags.string({ description: 'display name (default: the one chosen at pairing)' }),
  };

  async run(): Promise<{ exit_code: number }> {
    const { flags } = await this.parse(WorkstationRun);
    const credential = await requireCredential();
    const bin = await agentBinPath();
    const args = [
      ...(flags.runtime ?? []).flatMap((r) => ['--runtime', r]),
      ...(flags['max-runs'] ? ['--max-runs', String(flags['max-runs'])] : []),
      ...(flags.labels ?? []).flatMap((l) => ['--labels', l]),
      ...(flags.once ? ['--once'] : []),
      ...(flags.link ? [] : ['--no-link']),
      ...(flags['lease-ms'] ? ['--lease-ms', String(flags['lease-ms'])] : []),
      ...(flags['poll-interval-ms'] ? ['--poll-interval-ms', String(flags['poll-interval-ms'])] : []),
      ...(flags['shutdown-grace-ms'] !== undefined ? ['--shutdown-grace-ms', String(flags['shutdown-grace-ms'])] : []),
      ...(flags['stop-timeout-ms'] !== undefined ? ['--stop-timeout-ms', String(flags['stop-timeout-ms'])] : []),
      ...(flags['state-dir'] ? ['--state-dir', flags['state-dir']] : []),
      ...(flags.name ? ['--name', flags.name] : []),
    ];
    // The agent gets its own process group, so a Ctrl-C reaches it once (forwarded), not twice.
    const child = spawn(process.execPath, [bin, ...args], {
      stdio: 'inherit',
      detached: true,
      env: {
        ...process.env,
        RUNT_CLOUD_URL: credential.cloud_url,
        RUNT_CLOUD_TOKEN: credential.token,
        ...(credential.workstation_id ? { RUNT_WORKSTATION_ID: credential.workstation_id } : {}),
      },
    });
    const forward = (sig: NodeJS.Signals) => child.kill(sig);
    for (const sig of FORWARDED) process.on(sig, forward);
    const exitCode = await new Promise<number>((resolve, reject) => {
      child.once('error', (e) => reject(new CliError(`cannot start the agent (${bin}): ${e.message}`)));
      child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 + (signalNumber(signal) ?? 1) : 1)));
    }).finally(() => {
      for (const sig of FORWARDED) process.off(sig, forward);
    });
    // The agent printed its own one-line error; pass its exit code on without a second line.
    process.exitCode = exitCode;
    return { exit_code: exitCode };
  }
}

/** The `runt-agent` binary of the @runt/agent this CLI depends on. */
export async function agentBinPath(): Promise<string> {
  let entry: string;
  try {
    entry = fileURLToPath(import.meta.resolve('@runt/agent'));
  } catch {
    throw new CliError('the runt agent is not installed: add @runt/agent next to runt');
  }
  // dist/index.js → the package root.
  const root = dirname(dirname(entry));
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { name?: string; bin?: Record<string, string> };
  const rel = pkg.name === '@runt/agent' ? pkg.bin?.['runt-agent'] : undefined;
  if (!rel) throw new CliError(`cannot find the runt-agent binary in ${root}`);
  return join(root, rel);
}

function signalNumber(sig: NodeJS.Signals): number | undefined {
  return ({ SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[sig];
}
