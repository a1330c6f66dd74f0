import { spawn } from 'node:child_process';
import type { Writable } from 'node:stream';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Flags } from '@oclif/core';
import { credentialUrls } from '@runt/pairing';
import { parseUrls, requireCredential } from '../../config.js';
import { CliError } from '../../errors.js';

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];

export default class WorkstationRun extends Command {
  static override summary =
    'Run the agent: take runs from the control plane and execute them in the runtimes you name.';
  static override description =
    "Starts the runt-agent binary of the installed @runt/agent with this machine's credential (RUNT_CLOUD_URL / RUNT_CLOUD_TOKEN win over the stored file). The token goes to the agent over a pipe, never argv or its environment, and the agent stops when this command dies. Signals are forwarded; SIGTERM lets runs finish up to the grace time, a second one stops them. A second agent for the same workstation and state dir refuses to start.";
  static override examples = [
    '<%= config.bin %> workstation run --runtime process',
    '<%= config.bin %> workstation run --runtime docker --runtime process --max-runs 4 --labels gpu=a100',
    '<%= config.bin %> workstation run --runtime process --max-runs 8 --prefetch 8',
    '<%= config.bin %> workstation run --runtime docker --once',
  ];
  static override flags = {
    runtime: Flags.string({
      description: 'runtime to offer (repeatable): process, docker, podman (default RUNT_DEFAULT_RUNTIME)',
      multiple: true,
    }),
    'max-runs': Flags.integer({ description: 'runs at once (default 1)', min: 1 }),
    prefetch: Flags.integer({
      description:
        'runs taken ahead of a free slot, each started as one frees: for many short runs (default 0; RUNT_PREFETCH)',
      min: 0,
      max: 10_000,
    }),
    labels: Flags.string({
      description: 'workstation label k=v (repeatable, or comma-separated)',
      multiple: true,
      aliases: ['label'],
    }),
    once: Flags.boolean({ description: 'take one run, finish it and exit' }),
    link: Flags.boolean({
      description: 'hold the WebSocket link (--no-link: poll only)',
      allowNo: true,
      default: true,
    }),
    'lease-ms': Flags.integer({
      description: 'lease length per run in ms (default 30000; RUNT_LEASE_MS)',
      min: 2000,
    }),
    'poll-interval-ms': Flags.integer({
      description: 'polling period while the link is down (default 2000)',
      min: 50,
    }),
    'shutdown-grace-ms': Flags.integer({
      description: 'how long runs may finish after SIGTERM (default 30000)',
      min: 0,
    }),
    'stop-timeout-ms': Flags.integer({
      description: 'polite-signal-to-kill time when stopping a workload (default 10000)',
      min: 0,
    }),
    'state-dir': Flags.string({
      description: 'per-run state files (default RUNT_STATE_DIR, else <config dir>/state)',
    }),
    name: Flags.string({ description: 'display name (default: the one chosen at pairing)' }),
    'log-format': Flags.string({
      description:
        "the agent's log: pretty (a line a person reads) or json (default: pretty on a terminal, json when piped; RUNT_LOG_FORMAT)",
      options: ['pretty', 'json'],
    }),
    url: Flags.string({
      description:
        "control plane URL(s), comma-separated, the agent fails over between (default: RUNT_CLOUD_URL, else the pairing's stored URLs)",
    }),
  };

  async run(): Promise<{ exit_code: number }> {
    const { flags } = await this.parse(WorkstationRun);
    const credential = await requireCredential();
    const bin = await agentBinPath();
    const args = [
      ...(flags.runtime ?? []).flatMap((r) => ['--runtime', r]),
      ...(flags['max-runs'] ? ['--max-runs', String(flags['max-runs'])] : []),
      ...(flags.prefetch !== undefined ? ['--prefetch', String(flags.prefetch)] : []),
      ...(flags.labels ?? []).flatMap((l) => ['--labels', l]),
      ...(flags.once ? ['--once'] : []),
      ...(flags.link ? [] : ['--no-link']),
      ...(flags['lease-ms'] ? ['--lease-ms', String(flags['lease-ms'])] : []),
      ...(flags['poll-interval-ms'] ? ['--poll-interval-ms', String(flags['poll-interval-ms'])] : []),
      ...(flags['shutdown-grace-ms'] !== undefined
        ? ['--shutdown-grace-ms', String(flags['shutdown-grace-ms'])]
        : []),
      ...(flags['stop-timeout-ms'] !== undefined
        ? ['--stop-timeout-ms', String(flags['stop-timeout-ms'])]
        : []),
      ...(flags['state-dir'] ? ['--state-dir', flags['state-dir']] : []),
      ...(flags.name ? ['--name', flags.name] : []),
      ...(flags['log-format'] ? ['--log-format', flags['log-format']] : []),
    ];
    // The agent gets its own process group, so a Ctrl-C reaches it once (forwarded), not twice.
    // The token goes over a pipe (fd 3), never the environment: a process's initial environment
    // stays readable in /proc/<pid>/environ. The pipe stays open while this process lives, so
    // the agent also learns when it dies (even kill -9) and stops instead of being orphaned.
    const { RUNT_CLOUD_TOKEN: _ignored, ...env } = process.env;
    const child = spawn(process.execPath, [bin, ...args], {
      stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
      detached: true,
      env: {
        ...env,
        RUNT_CLOUD_URL: (flags.url ? parseUrls(flags.url) : credentialUrls(credential)).join(','),
        RUNT_CLOUD_TOKEN_FD: '3',
        ...(credential.workstation_id ? { RUNT_WORKSTATION_ID: credential.workstation_id } : {}),
      },
    });
    const handover = child.stdio[3] as Writable | null;
    handover?.on('error', () => {}); // the agent exited first: its exit code says why
    handover?.write(`${credential.token}\n`);
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
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
    name?: string;
    bin?: Record<string, string>;
  };
  const rel = pkg.name === '@runt/agent' ? pkg.bin?.['runt-agent'] : undefined;
  if (!rel) throw new CliError(`cannot find the runt-agent binary in ${root}`);
  return join(root, rel);
}

function signalNumber(sig: NodeJS.Signals): number | undefined {
  return ({ SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[sig];
}
