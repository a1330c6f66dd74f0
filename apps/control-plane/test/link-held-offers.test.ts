import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { controlMessageSchema, type ClaimRunResponse, type ControlMessage } from '@runt/protocol';
import { eventually, sampleRun } from '@runt/protocol/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { LinkRegistry, type AgentLink } from '../src/link/link-registry.js';

// Offers a scheduling pass makes while a link is registering are held and sent once it has
// registered (`flushHeld`). A run claimed on offer for this link's runner used to be dropped
// there: it stayed accepted and never started until its lease ran out (then runner-lost).
describe('offers held while a link registers', () => {
  const closers: Array<() => void> = [];
  afterEach(() => {
    for (const c of closers.splice(0)) c();
  });

  /** A real WebSocket pair: the control plane's end as an unregistered AgentLink, and what the agent's end got. */
  async function linkPair(): Promise<{ link: AgentLink; got: ControlMessage[] }> {
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(server, 'listening');
    const accepted = once(server, 'connection');
    const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
    const got: ControlMessage[] = [];
    client.on('message', (d) =>
      got.push(controlMessageSchema.parse(JSON.parse((d as Buffer).toString('utf8')))),
    );
    const [socket] = (await accepted) as [WebSocket];
    await once(client, 'open');
    closers.push(() => {
      client.terminate();
      server.close();
    });
    const link: AgentLink = {
      socket,
      workstationId: 'ws_1',
      credentialId: 'cred_1',
      alive: true,
      registered: false,
      chain: Promise.resolve(),
    };
    return { link, got };
  }

  function grant(id: string, holder: string, token: number): ClaimRunResponse {
    const expires = new Date(Date.now() + 30_000).toISOString();
    return {
      fencing_token: token,
      expires_at: expires,
      next_event_seq: 1,
      run: sampleRun({
        id,
        status: 'accepted',
        workstation_id: 'ws_1',
        lease: { holder, fencing_token: token, expires_at: expires },
      }),
    };
  }

  it('sends a held offer-claimed to the runner it was claimed for, once, and nothing of another runner', async () => {
    const { link, got } = await linkPair();
    const links = new LinkRegistry();
    links.add(link);
    const mine = grant('run_mine', 'ws_1/runner-a', 7);
    const resent = grant('run_resent', 'ws_1/runner-a', 8);
    const theirs = grant('run_theirs', 'ws_1/runner-old', 3);
    // The pass runs while the link is registering: held, not sent.
    expect(links.send('ws_1', { type: 'offer-claimed', runs: [mine, resent, theirs] })).toBe(true);
    expect(link.held).toHaveLength(1);

    link.registered = true;
    link.claimer = { holder: 'ws_1/runner-a', leaseMs: 30_000 };
    // The registration's own read already re-sent `run_resent`.
    links.flushHeld(link, new Set(['run_resent']));

    await eventually(() => got.length > 0, 'the held claimed offer');
    await new Promise((r) => setTimeout(r, 50));
    const runs = got.flatMap((m) => (m.type === 'offer-claimed' ? m.runs : []));
    expect(runs.map((r) => [r.run.id, r.fencing_token])).toEqual([['run_mine', 7]]);
  });

  it('still sends held plain offers the registration did not re-send', async () => {
    const { link, got } = await linkPair();
    const links = new LinkRegistry();
    links.add(link);
    links.send('ws_1', { type: 'offer', id: 'run_1', run: sampleRun({ id: 'run_1' }) });
    links.send('ws_1', { type: 'offer', id: 'run_2', run: sampleRun({ id: 'run_2' }) });
    link.registered = true;
    links.flushHeld(link, new Set(['run_2']));
    await eventually(() => got.length > 0, 'the held offer');
    await new Promise((r) => setTimeout(r, 50));
    expect(got.map((m) => (m.type === 'offer' ? m.id : m.type))).toEqual(['run_1']);
  });
});
