import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterEach, expect, it } from 'vitest';
import { ControlPlaneClient } from '@runt/protocol';
import { claimUntilKnown } from './run-claim.js';

let server: Server | undefined;
afterEach(async () => {
  await new Promise((resolve) => server?.close(resolve));
  server = undefined;
});

it('an unanswered claim is not asked again once the agent stops taking runs (no timer holds the exit up)', async () => {
  let claims = 0;
  // A control plane that cannot answer claims (a stalled or restarting one).
  server = createServer((req, res) => {
    claims++;
    res.writeHead(503, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'unavailable', message: 'down' } }));
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const client = new ControlPlaneClient({ url: `http://127.0.0.1:${port}`, token: 't', retries: 0 });
  const stopping = new AbortController();
  const started = performance.now();
  const claimed = claimUntilKnown({
    client,
    runId: 'run_1',
    runnerId: 'agent-1',
    leaseMs: 30_000,
    logger: pino({ level: 'silent' }),
    backoff: { baseMs: 20_000, capMs: 20_000 },
    signal: stopping.signal,
  });
  while (claims === 0) await new Promise((resolve) => setTimeout(resolve, 10));
  stopping.abort(); // shutdown begins while it waits to ask again
  expect(await claimed).toBeUndefined();
  // Without the signal it slept out its backoff (20 s) and asked again, for up to 2 leases.
  expect(performance.now() - started).toBeLessThan(15_000);
  expect(claims).toBe(1);
});
