// Link doubles for the links bench: one child process holding many agent links, each through the
// agent's own `LinkClient` (the same upgrade, `register` message, and jittered-backoff reconnect
// loop as `runt-agent`), without runtimes or HTTP. Driven over IPC by links-bench.ts:
//   { type: 'open', url, links: [{ token, workstationId }] }  → { type: 'opened' } once all are up
//   { type: 'count' }                                          → { type: 'count', up, opens }
//   { type: 'close' }                                          → aborts every loop, then exits
import { createLogger, LinkClient } from '@runt/agent';

export type LinkDoublesRequest =
  | { type: 'open'; url: string; links: Array<{ token: string; workstationId: string }> }
  | { type: 'count' }
  | { type: 'close' };

export interface LinkDoublesCount {
  type: 'count';
  /** Links open right now. */
  up: number;
  /** Links opened since the process started (first opens and re-opens). */
  opens: number;
  /** Connection attempts that did not open (refused, reset, upgrade refused). */
  failures: number;
}

const logger = createLogger('silent');
const life = new AbortController();
let up = 0;
let opens = 0;
let failures = 0;

function open(url: string, links: Array<{ token: string; workstationId: string }>): void {
  for (const { token, workstationId } of links) {
    const client = new LinkClient({
      url,
      token: () => token,
      register: () => ({
        type: 'register',
        workstation_id: workstationId,
        workstation: {
          display_name: 'bench-link',
          hostname: 'bench',
          cpu_count: 1,
          memory_bytes: 1,
          max_runs: 1,
          runtimes: ['fake'],
          labels: {},
          agent_version: 'bench',
          // Not listening: the scheduler offers nothing to an idle double.
          listening: false,
        },
        running_run_ids: [],
      }),
      onAttempt: (_url, opened) => {
        if (!opened) failures++;
      },
      onMessage: () => {},
      onUp: (isUp) => {
        if (isUp) {
          up++;
          opens++;
        } else up--;
      },
      onFatal: (e) => process.stderr.write(`link-doubles: ${e.message}\n`),
      logger,
    });
    void client.run(life.signal);
  }
}

process.on('message', (m: LinkDoublesRequest) => {
  if (m.type === 'open') open(m.url, m.links);
  else if (m.type === 'count')
    process.send!({ type: 'count', up, opens, failures } satisfies LinkDoublesCount);
  else {
    life.abort();
    setTimeout(() => process.exit(0), 500).unref();
    process.disconnect();
  }
});
process.send!({ type: 'ready' });
