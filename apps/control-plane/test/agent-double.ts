import { WebSocket } from 'ws';
import {
  ControlPlaneClient,
  controlMessageSchema,
  type ControlMessage,
  type RegisterWorkstationRequest,
} from '@runt/protocol';
import { eventually } from '@runt/protocol/testing';
import type { Harness } from './harness.js';

/** Polls until truthy: the one helper in `@runt/protocol/testing` (15 s bound, every 20 ms). */
export { eventually };

let counter = 0;
/** A runtime name no other test uses, so the scheduler keeps tests apart. */
export const uniqueRuntime = () => `rt${process.pid % 1000}x${++counter}`;

/** A paired workstation driven by hand: an HTTP client plus, optionally, an agent link. */
export interface AgentDouble {
  workstationId: string;
  credentialId: string;
  token: string;
  client: ControlPlaneClient;
  /** Every control message received over the link. */
  messages: ControlMessage[];
  link?: WebSocket;
  closed?: { code: number; reason: string };
  /** Registers over HTTP (the polling path) with `listening: true`. */
  registerHttp(extra?: Partial<RegisterWorkstationRequest>): Promise<void>;
  /** Opens the agent link and sends `register`; resolves on `registered`. */
  connect(extra?: Partial<RegisterWorkstationRequest>, runningRunIds?: string[]): Promise<void>;
  waitFor<T extends ControlMessage['type']>(
    type: T,
    pred?: (m: Extract<ControlMessage, { type: T }>) => boolean,
  ): Promise<Extract<ControlMessage, { type: T }>>;
  waitClosed(): Promise<{ code: number; reason: string }>;
}

/** Pairs a new workstation and returns a double for its agent. */
export async function pairAgent(h: Harness, name: string, runtimes: string[]): Promise<AgentDouble> {
  const minted = await h.api('/api/workstations/pairing-codes', { token: h.adminToken, body: {} });
  const redeemed = await h.api('/api/workstations/pairing-codes/redeem', {
    body: { code: minted.json.pairing.code, display_name: name },
  });
  if (redeemed.status !== 201) throw new Error(`redeem failed: ${JSON.stringify(redeemed.json)}`);
  const token: string = redeemed.json.credential.token;
  const base = (extra: Partial<RegisterWorkstationRequest> = {}): RegisterWorkstationRequest => ({
    display_name: name,
    cpu_count: 4,
    runtimes,
    agent_version: '0.0.0-test',
    listening: true,
    ...extra,
  });
  const a: AgentDouble = {
    workstationId: redeemed.json.workstation.id,
    credentialId: redeemed.json.credential.credential_id,
    token,
    client: new ControlPlaneClient({ url: h.cp.url, token, retries: 0 }),
    messages: [],
    async registerHttp(extra) {
      await a.client.registerWorkstation(base(extra));
    },
    async connect(extra, runningRunIds = []) {
      const ws = new WebSocket(`${h.cp.url.replace(/^http/, 'ws')}/api/agent/link`, {
        headers: { authorization: `Bearer ${token}` },
      });
      a.link = ws;
      a.closed = undefined;
      ws.on('message', (data) =>
        a.messages.push(controlMessageSchema.parse(JSON.parse((data as Buffer).toString('utf8')))),
      );
      ws.on('close', (code, reason) => (a.closed = { code, reason: String(reason) }));
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      const before = a.messages.length;
      ws.send(JSON.stringify({ type: 'register', workstation: base(extra), running_run_ids: runningRunIds }));
      await eventually(() => a.messages.slice(before).some((m) => m.type === 'registered'), 'registered');
    },
    async waitFor(type, pred) {
      return eventually(
        () => a.messages.find((m) => m.type === type && (!pred || pred(m as never))) as never,
        `a ${type} message`,
      );
    },
    async waitClosed() {
      return eventually(() => a.closed, 'the link to close');
    },
  };
  return a;
}
