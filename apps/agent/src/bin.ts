#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { loadCredential } from '@runt/pairing';
import { redactSecrets } from '@runt/transport-auth';
import { Agent } from './agent.js';
import { AGENT_USAGE, cloudUrlsFromEnv, loadAgentConfig } from './agent-config.js';
import { acquireAgentLock } from './agent-lock.js';
import { createLogger } from './create-logger.js';
import { takeToken } from './token-handover.js';

const version = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

async function main(): Promise<number> {
  const config = loadAgentConfig(process.argv.slice(2), process.env);
  if (config.help) {
    process.stdout.write(`${AGENT_USAGE}\n`);
    return 0;
  }
  // The token leaves this process's environment before anything is started (workloads, runtimes).
  const handover = await takeToken(process.env, () => {
    // `runt workstation run` is gone (even kill -9): stop as if it had sent SIGTERM.
    process.kill(process.pid, 'SIGTERM');
  });
  // RUNT_CLOUD_URL may name several control planes; the credential store checks the first.
  const cloudUrls = cloudUrlsFromEnv(process.env);
  const credential = await loadCredential({
    env: {
      ...process.env,
      ...(cloudUrls ? { RUNT_CLOUD_URL: cloudUrls[0] } : {}),
      ...(handover.token ? { RUNT_CLOUD_TOKEN: handover.token } : {}),
    },
  });
  if (!credential?.cloud_url || !credential.token) {
    throw new Error(
      'this machine is not paired: run runt workstation connect <url> --code XXXX-XXXX-XXXX (or set RUNT_CLOUD_URL and RUNT_CLOUD_TOKEN)',
    );
  }
  acquireAgentLock(config.stateDir);
  const logger = createLogger(config.logLevel, undefined, config.logFormat);
  const agent = new Agent({
    url: cloudUrls ? cloudUrls.join(',') : credential.cloud_url,
    token: credential.token,
    ...(credential.workstation_id ? { workstationId: credential.workstation_id } : {}),
    ...(config.displayName || credential.display_name
      ? { displayName: config.displayName ?? credential.display_name }
      : {}),
    runtimes: config.runtimes,
    maxRuns: config.maxRuns,
    prefetch: config.prefetch,
    labels: config.labels,
    once: config.once,
    link: config.link,
    leaseMs: config.leaseMs,
    pollIntervalMs: config.pollIntervalMs,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    shutdownGraceMs: config.shutdownGraceMs,
    stopTimeoutMs: config.stopTimeoutMs,
    shutdownSignals: config.shutdownSignals,
    stateDir: config.stateDir,
    logger,
    version,
  });
  await agent.run();
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    const message = (e as Error)?.message ?? String(e);
    process.stderr.write(`runt-agent: ${redactSecrets(message.split('\n')[0])}\n`);
    process.exitCode = 1;
  },
);
