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
/**
 * One controller per link, as each runt-agent has its own: thousands of `LinkClient`s on one
 * signal made every attempt's add/removeEventListener walk thousands of listeners (Node's
 * EventTarget keeps a list) — quadratic CPU in the doubles, not in what is measured.
 */
const lives: AbortController[] = [];
let up = 0;
let opens = 0;
let failures = 0;

function open(url: string, links: Array<{ token: string; workstationId: string }>): void {
  for (const { token, workstationId } of links) {
    const life = new AbortController();
    lives.push(life);
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
          // As runt-agent registers: listening, claim on offer (the queue is empty: nothing is
          // offered), so the restart pays what a real fleet's does (scheduling passes included).
          listening: true,
        },
        running_run_ids: [],
        claim_on_offer: { runner_id: 'bench', lease_ms: 30_000 },
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
    for (const life of lives) life.abort();
    setTimeout(() => process.exit(0), 500).unref();
    process.disconnect();
  }
});
process.send!({ type: 'ready' });
