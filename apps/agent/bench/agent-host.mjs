// Hosts N in-process agents on the fake runtime for the benchmark (one child process, so the
// control plane and the agents do not share an event loop). Config comes in BENCH_AGENTS (JSON).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, createLogger } from '../dist/index.js';

const { url, agents, link, maxRuns, pollIntervalMs } = JSON.parse(process.env.BENCH_AGENTS);
const root = mkdtempSync(join(tmpdir(), 'runt-bench-agents-'));
const logger = createLogger('warn');
const running = agents.map(
  (a, i) =>
    new Agent({
      url,
      token: a.token,
      workstationId: a.workstationId,
      displayName: `bench-${i}`,
      runtimes: ['fake'],
      maxRuns,
      link,
      pollIntervalMs,
      leaseMs: 30_000,
      stateDir: join(root, String(i)),
      shutdownSignals: [],
      shutdownGraceMs: 1_000,
      logger,
    }),
);
const done = Promise.allSettled(running.map((a) => a.run()));
const waitUp = setInterval(() => {
  if (running.every((a) => a.state === 'running')) {
    clearInterval(waitUp);
    process.send?.('ready');
  }
}, 20);
process.on('SIGTERM', async () => {
  await Promise.all(running.map((a) => a.shutdown({ graceMs: 0 })));
  await done;
  process.exit(0);
});
