import { mkdtempSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ControlPlaneClient } from '@runt/protocol';
import { RuntimeRegistry } from '@runt/runtime-spi';
import { createFakeRuntime } from '@runt/runtime-spi/fake';
import {
  eventually,
  pairWorkstation,
  restartableControlPlane,
  testAgent,
  testLogger,
} from './control-plane.js';

/**
 * A real HTTP proxy in front of the control plane that goes down (every request's connection
 * destroyed, nothing forwarded) at the first `running` report, before forwarding it, and stays
 * down until `up()`.
 */
async function outageProxy(target: () => string) {
  let down = false;
  let tripped = false;
  let wentDown: () => void = () => {};
  const downAt = new Promise<void>((r) => (wentDown = r));
  const server: Server = createServer((req, res) => {
    const body: Buffer[] = [];
    req.on('data', (c: Buffer) => body.push(c));
    req.on('end', () => {
      const bytes = Buffer.concat(body);
      if (!tripped && /\/status$/.test(req.url ?? '') && /"status":"running"/.test(bytes.toString('utf8'))) {
        tripped = true;
        down = true;
        wentDown();
      }
      if (down) return void req.socket.destroy();
      const up = request(
        new URL(req.url!, target()),
        { method: req.method, headers: { ...req.headers, host: new URL(target()).host } },
        (answer: IncomingMessage) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      up.end(bytes);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    downAt,
    up: () => void (down = false),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('an outage longer than the lease (issue 8, chaos)', () => {
  const root = mkdtempSync(join(tmpdir(), 'runt-agent-outage-'));
  const cp = restartableControlPlane(join(root, 'cp'));
  afterAll(() => cp.stop());

  it('a workload that ends while the control plane is down, with its `running` report unsent and its lease past the local deadline, is reported with its real exit', async () => {
    await cp.start();
    const { admin, token } = await pairWorkstation(cp.url, cp.adminToken, 'outage');
    const proxy = await outageProxy(() => `http://127.0.0.1:${cp.port}`);
    const log = testLogger();
    const agent = testAgent({
      url: proxy.url,
      token,
      maxRuns: 1,
      link: false, // every call over HTTP, through the proxy
      pollIntervalMs: 100,
      leaseMs: 3_000,
      stopTimeoutMs: 1_000,
      stateDir: join(root, 'agent'),
      registry: new RuntimeRegistry().register('fake', () => createFakeRuntime()),
      logger: log.logger,
    });
    const running = agent.run();
    try {
      // Exits 7 s after it starts: during the outage, 4 s past the lease's local deadline.
      const { run } = await admin.submitRun({
        runtime: 'fake',
        command: ['/bin/sh', '-c', 'sleep 7; exit 0'],
      });
      await proxy.downAt;
      await cp.stop();
      // Longer than the lease, and than the 10 s after which the control plane credits an outage.
      await new Promise((r) => setTimeout(r, 12_000));
      expect(log.lines.some((l) => l.msg === 'dropping the run')).toBe(false);
      await cp.start();
      proxy.up();
      const back = new ControlPlaneClient({ url: cp.url, token: cp.adminToken });
      const end = await eventually(
        async () => {
          const r = (await back.getRun(run.id)).run;
          return ['completed', 'failed', 'cancelled'].includes(r.status) ? r : undefined;
        },
        'the run to end',
        60_000,
      );
      expect(end).toMatchObject({ status: 'completed', exit_code: 0, attempt: 1 });
      expect(log.lines.some((l) => l.msg === 'dropping the run')).toBe(false);
    } finally {
      proxy.up();
      await agent.shutdown({ graceMs: 0 });
      await running.catch(() => undefined);
      await proxy.close();
    }
  }, 120_000);
});
