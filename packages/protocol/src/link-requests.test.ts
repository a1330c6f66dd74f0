import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiError } from './errors.js';
import { ControlPlaneClient } from './client.js';
import {
  LINK_OPS,
  MAX_LINK_BATCH_REQUESTS,
  agentRequestMessageSchema,
  agentRequestsMessageSchema,
  controlRepliesMessageSchema,
  controlReplyMessageSchema,
  linkRequestOf,
} from './link-requests.js';
import { LINK_OP_REQUEST_SCHEMAS, agentMessageSchema, controlMessageSchema } from './runs.js';
import { jsonAnswer, TransportError, type TransportRequest } from './transport.js';

describe('linkRequestOf', () => {
  it('maps every fenced run endpoint to its op, and nothing else', () => {
    const body = { fencing_token: 3 };
    expect(linkRequestOf({ method: 'POST', path: 'api/runs/run_1/claim', json: body })).toEqual({
      op: 'claim',
      target: 'run_1',
      body,
    });
    for (const action of ['heartbeat', 'events', 'status', 'release', 'hand-back'])
      expect(linkRequestOf({ method: 'POST', path: `api/runs/r%2Fx/${action}`, json: body })).toEqual({
        op: action,
        target: 'r/x',
        body,
      });
    expect(linkRequestOf({ method: 'POST', path: 'api/commands/cmd_1/ack', json: body })?.op).toBe(
      'command-ack',
    );
    expect(linkRequestOf({ method: 'POST', path: 'api/commands/cmd_1/status', json: body })?.op).toBe(
      'command-status',
    );
    // Stays on HTTP: reads, submits, other resources, bodies that are not JSON, bad encodings.
    expect(linkRequestOf({ method: 'GET', path: 'api/runs/run_1/status', json: body })).toBeUndefined();
    expect(linkRequestOf({ method: 'POST', path: 'api/runs', json: body })).toBeUndefined();
    expect(linkRequestOf({ method: 'POST', path: 'api/runs/run_1/cancel', json: body })).toBeUndefined();
    expect(linkRequestOf({ method: 'POST', path: 'api/commands/c/claim', json: body })).toBeUndefined();
    expect(linkRequestOf({ method: 'POST', path: 'api/runs/run_1/claim' })).toBeUndefined();
    expect(linkRequestOf({ method: 'POST', path: 'api/runs/%E0%A4%A/claim', json: body })).toBeUndefined();
  });

  it('has one request schema per op, the HTTP endpoint’s', () => {
    expect(Object.keys(LINK_OP_REQUEST_SCHEMAS).sort()).toEqual(Object.keys(LINK_OPS).sort());
  });
});

describe('link request and reply messages', () => {
  it('are part of the agent and control message unions', () => {
    const req = { type: 'request', id: 'q1', op: 'heartbeat', target: 'run_1', body: { x: 1 } };
    expect(agentMessageSchema.parse(req)).toEqual(req);
    expect(agentRequestMessageSchema.safeParse({ ...req, op: 'submit' }).success).toBe(false);
    expect(agentRequestMessageSchema.safeParse({ ...req, id: '' }).success).toBe(false);
    const ok = { type: 'reply', id: 'q1', status: 200, result: { ok: true } };
    const err = {
      type: 'reply',
      id: 'q1',
      status: 409,
      error: { code: 'runner-lease-conflict', message: 'no', details: { reason: 'x' } },
    };
    expect(controlMessageSchema.parse(ok)).toEqual(ok);
    expect(controlMessageSchema.parse(err)).toEqual(err);
    expect(controlReplyMessageSchema.safeParse({ ...ok, status: 42 }).success).toBe(false);
  });

  it('frame several requests and their replies (LINK_REQUESTS_FORM), bounded, each item as its lone message', () => {
    const item = { id: 'q1', op: 'status', target: 'run_1', body: { fencing_token: 1, status: 'completed' } };
    const frame = { type: 'requests', requests: [item, { ...item, id: 'q2', target: 'run_2' }] };
    expect(agentMessageSchema.parse(frame)).toEqual(frame);
    expect(agentRequestsMessageSchema.safeParse({ type: 'requests', requests: [] }).success).toBe(false);
    const many = Array.from({ length: MAX_LINK_BATCH_REQUESTS + 1 }, (_, i) => ({ ...item, id: `q${i}` }));
    expect(agentRequestsMessageSchema.safeParse({ type: 'requests', requests: many }).success).toBe(false);
    expect(agentRequestsMessageSchema.safeParse({ type: 'requests', requests: many.slice(1) }).success).toBe(
      true,
    );
    // Each item is checked as a lone request is: a bad op, an empty id or target refuse the frame.
    for (const bad of [{ op: 'submit' }, { id: '' }, { target: '' }])
      expect(
        agentMessageSchema.safeParse({ type: 'requests', requests: [{ ...item, ...bad }] }).success,
        JSON.stringify(bad),
      ).toBe(false);
    const replies = {
      type: 'replies',
      replies: [
        { id: 'q1', status: 200, result: { status: 'completed', next_event_seq: 3 } },
        { id: 'q2', status: 409, error: { code: 'runner-lease-conflict', message: 'no' } },
      ],
    };
    expect(controlMessageSchema.parse(replies)).toEqual(replies);
    expect(
      controlRepliesMessageSchema.safeParse({ type: 'replies', replies: [{ id: 'q', status: 42 }] }).success,
    ).toBe(false);
    expect(controlRepliesMessageSchema.safeParse({ type: 'replies', replies: [] }).success).toBe(false);
  });
});

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(
    servers.splice(0).map((s) => {
      s.closeAllConnections();
      return new Promise((r) => s.close(r));
    }),
  );
});

describe('a client with a `via` channel (over a real server)', () => {
  it('answers through the channel when it answers, over HTTP when it declines, and as HTTP would', async () => {
    const http: string[] = [];
    const server = createServer((req, res) => {
      http.push(`${req.method} ${req.url}`);
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ expires_at: '2030-01-01T00:00:00.000Z', cancel_requested: false }));
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const seen: TransportRequest[] = [];
    let mode: 'answer' | 'decline' | 'conflict' | 'fail' = 'answer';
    let failures = 0;
    const client = new ControlPlaneClient({
      url,
      token: 'rnt_ws_t',
      retries: 2,
      via: (req) => {
        seen.push(req);
        if (mode === 'decline') return Promise.resolve(undefined);
        if (mode === 'fail' && failures++ === 0)
          return Promise.reject(new TransportError('network', 'link lost'));
        if (mode === 'conflict')
          return Promise.resolve(
            jsonAnswer(409, { error: { code: 'runner-lease-conflict', message: 'not yours' } }),
          );
        return Promise.resolve(
          jsonAnswer(200, { expires_at: '2031-01-01T00:00:00.000Z', cancel_requested: true }),
        );
      },
    });
    const body = { fencing_token: 1, lease_ms: 30_000 };
    expect(await client.heartbeatRun('run_1', body)).toEqual({
      expires_at: '2031-01-01T00:00:00.000Z',
      cancel_requested: true,
    });
    expect(http).toEqual([]);
    mode = 'conflict';
    const e = await client.heartbeatRun('run_1', body).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ApiError);
    expect(e).toMatchObject({ status: 409, code: 'runner-lease-conflict' });
    mode = 'fail';
    expect((await client.heartbeatRun('run_1', body)).cancel_requested).toBe(true);
    mode = 'decline';
    expect((await client.heartbeatRun('run_1', body)).cancel_requested).toBe(false);
    expect(http).toEqual(['POST /api/runs/run_1/heartbeat']);
    expect(seen.every((r) => r.path === 'api/runs/run_1/heartbeat')).toBe(true);
  });
});
