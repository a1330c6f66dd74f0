import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { eventually as poll } from '@runt/protocol/testing';

/** The repository root (the image's build context). */
export const REPO = fileURLToPath(new URL('../..', import.meta.url));
/** The runt CLI of this checkout. */
export const RUNT_BIN = fileURLToPath(new URL('../../apps/cli/bin/run.js', import.meta.url));
/** The agent binary of this checkout (`runt-agent`). */
export const AGENT_BIN = fileURLToPath(new URL('../../apps/agent/dist/bin.js', import.meta.url));
/** Where the docker engine is: DOCKER_HOST, else the private engine of scripts/setup-engines.sh. */
export const DOCKER_HOST =
  process.env.DOCKER_HOST ||
  (existsSync('/run/runt-docker/docker.sock') ? 'unix:///run/runt-docker/docker.sock' : '');

export interface Ran {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs the docker CLI against DOCKER_HOST; never throws. */
export async function docker(args: string[], timeoutMs = 120_000): Promise<Ran> {
  const r = await execa('docker', args, {
    env: { DOCKER_HOST },
    reject: false,
    stdin: 'ignore',
    timeout: timeoutMs,
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Runs the docker CLI and fails the test with its stderr when it exits nonzero. */
export async function dockerOk(args: string[], timeoutMs?: number): Promise<string> {
  const r = await docker(args, timeoutMs);
  if (r.exitCode !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.exitCode}: ${r.stderr}`);
  return r.stdout.trim();
}

/** Runs the built CLI as a subprocess, as a script would. */
export async function runt(args: string[], env: Record<string, string | undefined> = {}): Promise<Ran> {
  const r = await execa('node', [RUNT_BIN, ...args], {
    env: {
      ...process.env,
      RUNT_CLOUD_URL: undefined,
      RUNT_CLOUD_TOKEN: undefined,
      RUNT_ADMIN_TOKEN: undefined,
      DEBUG: undefined,
      ...env,
    },
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    timeout: 60_000,
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Polls `probe` until it returns something truthy (`@runt/protocol/testing`; here 90 s, every 200 ms). */
export function eventually<T>(
  probe: () => Promise<T | undefined | false>,
  what: string,
  timeoutMs = 90_000,
): Promise<T> {
  return poll(probe, what, timeoutMs, 200) as Promise<T>;
}

/** Everything a container wrote (stdout: JSON logs, stderr: the banner). */
export async function logsOf(name: string): Promise<string> {
  const r = await docker(['logs', name]);
  return `${r.stdout}\n${r.stderr}`;
}

/** Waits for the connect line of the startup banner and returns the URL and code it names. */
export async function connectLineOf(
  name: string,
  timeoutMs = 120_000,
): Promise<{ line: string; url: string; code: string }> {
  return eventually(
    async () => {
      const logs = await logsOf(name);
      const m = /^\s*(.*workstation connect (\S+) --code (\S+))\s*$/m.exec(logs);
      if (m) return { line: m[1]!, url: m[2]!, code: m[3]! };
      const state = await dockerOk(['inspect', '--format', '{{.State.Status}}', name]);
      if (state !== 'running') throw new Error(`container ${name} is ${state}: ${logs}`);
      return undefined;
    },
    `the connect line of ${name}`,
    timeoutMs,
  );
}

/**
 * deploy/haproxy.cfg as shipped, but bound to 127.0.0.1:`lbPort` and pointed at local replicas
 * (`server cpN 127.0.0.1:<port>` for each given port); returns the written file.
 */
export function writeHaproxyConfig(lbPort: number, cpPorts: number[]): string {
  const shipped = readFileSync(join(REPO, 'deploy/haproxy.cfg'), 'utf8');
  let cfg = shipped.replace(/^\s*bind :8787$/m, `  bind 127.0.0.1:${lbPort}`);
  for (const n of [1, 2, 3]) {
    const port = cpPorts[n - 1];
    cfg = cfg.replace(
      new RegExp(`^\\s*server cp${n} cp${n}:8787\\n`, 'm'),
      port ? `  server cp${n} 127.0.0.1:${port}\n` : '',
    );
  }
  if (!cfg.includes(`bind 127.0.0.1:${lbPort}`) || cfg.match(/^\s*server /gm)?.length !== cpPorts.length) {
    throw new Error('deploy/haproxy.cfg no longer has the bind and server lines this rewrite expects');
  }
  const file = join(mkdtempSync(join(tmpdir(), 'runt-lb-')), 'haproxy.cfg');
  writeFileSync(file, cfg);
  return file;
}
