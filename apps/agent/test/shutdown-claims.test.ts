import { mkdtempSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RuntimeRegistry, type Runtime } from '@runt/runtime-spi';
import { createFakeRuntime } from '@runt/runtime-spi/fake';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  eventually,
  startTestControlPlane,
  testLogger,
  testAgent,
  type TestControlPlane,
} from './control-plane.js';

let h: TestControlPlane;
beforeAll(async () => {
  h = await startTestControlPlane();
});
afterAll(async () => {
  await h?.close();
});

const runOf = async (id: string) => (await h.admin.getRun(id)).run;

/** Runs handed back unstarted so far (the control plane's counter). */
async function handedBack(): Promise<number> {
  const text = await (await fetch(`${h.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('runt_cp_run_requeues_total{reason="handed-back"}'));
  return line ? Number(line.split(' ').pop()) : 0;
}

/** A fake runtime registry that counts workload starts and knows whether it was closed. */
function countingRegistry() {
  const seen = { starts: [] as string[], startsAfterClose: 0, closed: false };
  const registry = new RuntimeRegistry().register('fake', () => {
    const rt = createFakeRuntime();
    const start = rt.start.bind(rt);
    const close = rt.close.bind(rt);
    return Object.assign(rt, {
      start: ((id, opts) => {
        seen.starts.push(id);
        if (seen.closed) seen.startsAfterClose++;
        return start(id, opts);
      }) satisfies Runtime['start'],
      close: async () => {
        seen.closed = true;
        await close();
      },
    });
  });
  return { registry, seen };
}

/**
 * A real HTTP proxy in front of the control plane that holds the answers of claim requests
 * until `open()`: the control plane applies the claim at once, the agent learns it late.
 */
async function claimHoldingProxy(target: string) {
  const held: Array<() => void> = [];
  let holding = true;
  const claims: string[] = [];
  const server: Server = createServer((req, res) => {
    const isClaim = /\/api\/runs\/[^/]+\/claim$/.test(req.url ?? '');
    if (isClaim) claims.push(req.url!);
    const body: Buffer[] = [];
    req.on('data', (c: Buffer) => body.push(c));
    req.on('end', () => {
      const up = request(
        new URL(req.url!, target),
        { method: req.method, headers: { ...req.headers, host: new URL(target).host } },
        (answer: IncomingMessage) => {
          const chunks: Buffer[] = [];
          answer.on('data', (c: Buffer) => chunks.push(c));
          answer.on('end', () => {
            const send = () => {
              res.writeHead(answer.statusCode ?? 502, answer.headers);
              res.end(Buffer.concat(chunks));
            };
            if (isClaim && holding) held.push(send);
            else send();
          });
        },
      );
      up.on('error', () => res.destroy());
      up.end(Buffer.concat(body));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    claims,
    heldCount: () => held.length,
    open() {
      holding = false;
      for (const send of held.splice(0)) send();
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('an agent shutting down hands back the runs claimed while it stops, and never starts them (issue 8 review)', () => {
  it('waits for a claim in flight; answered after the shutdown began, the run goes back to the queue, unstarted', async () => {
    const proxy = await claimHoldingProxy(h.url);
    const { registry, seen } = countingRegistry();
    const log = testLogger();
    const agent = testAgent({
      url: proxy.url,
      token: h.token,
      maxRuns: 1,
      link: false, // the polling path: the run is claimed with a claim request
      pollIntervalMs: 100,
      stateDir: mkdtempSync(join(tmpdir(), 'runt-shutdown-claims-')),
      registry,
      logger: log.logger,
    });
    let stopped = false;
    const running = agent.run().finally(() => (stopped = true));
    const { run } = await h.admin.submitRun({ runtime: 'fake', command: ['sleep', '30'] });
    try {
      // the control plane applied the claim; its answer is held
      await eventually(() => proxy.heldCount() === 1, 'the claim answer is held', 30_000);
      expect((await runOf(run.id)).status).toBe('accepted');
      const shutdown = agent.shutdown({ graceMs: 30_000 });
      // the shutdown waits for the claim in flight
      await new Promise((r) => setTimeout(r, 500));
      expect(stopped).toBe(false);
      proxy.open();
      await shutdown;
      await running;
      // handed back (released over HTTP: no link), never started, not left to its lease
      const after = await runOf(run.id);
      expect(after.status).toBe('queued');
      expect(seen.starts).toEqual([]);
      expect(seen.startsAfterClose).toBe(0);
      expect(log.lines.some((l) => l.msg === 'stopping: the claimed run is handed back')).toBe(true);
    } finally {
      proxy.open();
      await agent.shutdown({ graceMs: 0 });
      await running.catch(() => undefined);
      await proxy.close();
      await h.admin.cancelRun(run.id).catch(() => undefined);
    }
  });

  it('is placed nothing while it drains its held runs (no claim on offer to hand back and place here again), and starts nothing', async () => {
    const { registry, seen } = countingRegistry();
    const log = testLogger();
    const agent = testAgent({
      url: h.url,
      token: h.token,
      maxRuns: 3,
      stateDir: mkdtempSync(join(tmpdir(), 'runt-shutdown-claims-')),
      registry,
      logger: log.logger,
    });
    const running = agent.run();
    try {
      const { run: held } = await h.admin.submitRun({ runtime: 'fake', command: ['sleep', '30'] });
      await eventually(
        async () => (await runOf(held.id)).status === 'running',
        'the first run is running',
        30_000,
      );
      expect(seen.starts.length).toBe(1);
      // shutdown with a long grace: the held run keeps it draining
      const backBefore = await handedBack();
      const shutdown = agent.shutdown({ graceMs: 60_000 });
      const { run: late } = await h.admin.submitRun({ runtime: 'fake', command: ['true'] });
      await new Promise((r) => setTimeout(r, 2_000));
      await h.admin.cancelRun(held.id);
      await shutdown;
      await running;
      expect((await runOf(held.id)).status).toBe('cancelled');
      const after = await runOf(late.id);
      // never started here, and back in the queue (not left accepted for its lease to run out)
      expect(seen.starts.length).toBe(1);
      expect(seen.startsAfterClose).toBe(0);
      expect(after.status).toBe('queued');
      expect(after.attempt).toBe(1);
      // before, the stopping agent still listened: the run was claimed for it on offer, handed
      // back, placed on it again, for as long as the grace lasted
      expect((await handedBack()) - backBefore).toBe(0);
      await h.admin.cancelRun(late.id);
    } finally {
      await agent.shutdown({ graceMs: 0 });
      await running.catch(() => undefined);
    }
  });
});
