import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ControlPlaneClient } from '@runt/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAgentError } from '../src/agent-error.js';
import { WorkstationRegistration } from '../src/workstation-registration.js';
import { eventually, startTestControlPlane, testLogger, type TestControlPlane } from './control-plane.js';

let h: TestControlPlane;
beforeAll(async () => {
  h = await startTestControlPlane();
});
afterAll(async () => {
  await h?.close();
});

const registrar = (client: ControlPlaneClient, signal = new AbortController().signal) =>
  new WorkstationRegistration({
    client,
    displayName: ' box-1 ',
    maxRuns: 3,
    labels: { pool: 'a' },
    version: '9.9.9',
    runtimes: () => ['fake', 'process'],
    signal,
    logger: testLogger().logger,
  });

describe('WorkstationRegistration against a real control plane', () => {
  it('registers what the agent offers and returns the workstation as the control plane sees it', async () => {
    const ws = await registrar(h.ws).register(true);
    expect(ws).toMatchObject({
      id: h.workstationId,
      display_name: 'box-1',
      max_runs: 3,
      runtimes: ['fake', 'process'],
      labels: { pool: 'a' },
      agent_version: '9.9.9',
      listening: true,
      status: 'online',
    });
    expect((await registrar(h.ws).register(false))?.listening).toBe(false);
  });

  it('says unauthorized when the credential is refused, even while retrying until done', async () => {
    const stranger = new ControlPlaneClient({
      url: h.url,
      token: 'rnt_ws_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
    });
    const e = await registrar(stranger)
      .register(true, { untilDone: true })
      .catch((x: unknown) => x);
    expect(isAgentError(e, 'unauthorized')).toBe(true);
  });

  it('retries an unreachable control plane until done, and gives up quietly when its signal aborts', async () => {
    let hits = 0;
    const down = createServer((_req, res) => {
      hits++;
      res
        .writeHead(503, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: { code: 'unavailable', message: 'starting' } }));
    });
    await new Promise<void>((r) => down.listen(0, '127.0.0.1', r));
    const client = new ControlPlaneClient({
      url: `http://127.0.0.1:${(down.address() as AddressInfo).port}`,
      token: h.token,
      retries: 0,
    });
    await expect(registrar(client).register(true)).rejects.toMatchObject({ status: 503 });
    const life = new AbortController();
    const pending = registrar(client, life.signal).register(true, { untilDone: true });
    await eventually(() => hits >= 3, 'retries');
    life.abort();
    expect(await pending).toBeUndefined();
    down.closeAllConnections();
    await new Promise((r) => down.close(r));
  });
});
