import { describe, expect, it } from 'vitest';
import {
  agentRequestOf,
  agentRequestsOf,
  linkRequestBodyOf,
  parseAgentMessage,
} from './agent-message-fast.js';
import { MAX_LINK_BATCH_REQUESTS } from './link-requests.js';
import type { LinkOp } from './link-requests.js';
import { mutations } from '../test/message-mutations.js';
import { agentMessageSchema, LINK_OP_REQUEST_SCHEMAS } from './runs.js';

/** A terminal report as the agent sends it over the link (the bench's fake runtime's, verbatim). */
const report = {
  fencing_token: 1,
  status: 'completed',
  exit_code: 0,
  started_ms_ago: 18,
  events: [
    {
      seq: 1,
      type: 'backend_status',
      payload: { state: 'started', instance_id: 'fake-000001', runtime: 'fake' },
      at: '2026-12-02T07:59:20.928Z',
    },
    { seq: 2, type: 'log', payload: { stream: 'stdout', data: 'hi\n' }, at: '2026-12-02T07:59:20.935Z' },
  ],
  answer: 'brief',
};
const request = (op: string, body: unknown, over: Record<string, unknown> = {}) => ({
  type: 'request',
  id: '1',
  op,
  target: 'run_90d123f2-9cd4-49fc-b709-a1e253e71632',
  body,
  ...over,
});

/** Odd values put in place of every field in turn (bounds of every number and string the schemas check). */
const ODD: unknown[] = [
  undefined,
  null,
  0,
  -1,
  1,
  1.5,
  -0,
  NaN,
  Infinity,
  2 ** 53,
  2 ** 31,
  2 ** 31 - 1,
  -(2 ** 31),
  -(2 ** 31) - 1,
  999,
  1000,
  600_000,
  600_001,
  '',
  'x',
  'x'.repeat(64),
  'x'.repeat(65),
  'x'.repeat(200),
  'x'.repeat(201),
  'x'.repeat(4097),
  'status',
  'events',
  'heartbeat',
  'claim',
  'constructor',
  'running',
  'queued',
  'timeout',
  'log',
  'brief',
  'run',
  'request',
  'register',
  '2026-02-29T00:00:00Z',
  '2024-02-29T23:59:59.123456Z',
  '2026-12-31T24:00:00Z',
  '2026-13-01T00:00:00Z',
  '2026-12-02T07:59:20.928+01:00',
  '2026-12-02T07:59Z',
  '2026-12-02t07:59:20Z',
  '2026-12-02T07:59:20.928',
  true,
  false,
  [],
  ['x'],
  {},
  { x: 1 },
  { a: undefined },
  Object.create(null) as unknown,
  new Date(0),
];

/** What the control plane did before the fast path: the envelope's schema, then the op's body schema. */
function bySchemas(msg: unknown): { ok: boolean; data?: unknown } {
  const env = agentMessageSchema.safeParse(msg);
  if (!env.success) return { ok: false };
  if (env.data.type !== 'request') return { ok: true, data: env.data };
  const body = LINK_OP_REQUEST_SCHEMAS[env.data.op].safeParse(env.data.body);
  return body.success ? { ok: true, data: { ...env.data, body: body.data } } : { ok: false };
}

/** The fast path as the link server uses it: the envelope, then the body (each falling back to its schema). */
function byFastPath(msg: unknown): { ok: boolean; data?: unknown; fast: boolean } {
  const env = parseAgentMessage(msg);
  if (!env.success) return { ok: false, fast: false };
  if (env.data.type !== 'request') return { ok: true, data: env.data, fast: false };
  const fastBody = linkRequestBodyOf(env.data.op, env.data.body);
  // fast: neither schema was asked
  const fast = agentRequestOf(msg) !== undefined && fastBody !== undefined;
  if (fastBody !== undefined) return { ok: true, data: { ...env.data, body: fastBody }, fast };
  const body = LINK_OP_REQUEST_SCHEMAS[env.data.op].safeParse(env.data.body);
  return body.success ? { ok: true, data: { ...env.data, body: body.data }, fast } : { ok: false, fast };
}

const good = [
  request('status', report),
  request('status', { fencing_token: 3, status: 'running' }),
  request('status', {
    fencing_token: 2 ** 40,
    status: 'failed',
    exit_code: -(2 ** 31),
    failure_kind: 'timeout',
    failure_message: 'x'.repeat(4096),
    events: [],
    answer: 'run',
  }),
  request('status', { ...report, events: [{ seq: 3, type: 'error', payload: {} }] }),
  request('events', { fencing_token: 1, events: report.events }),
  request('heartbeat', { fencing_token: 1, lease_ms: 30_000 }),
].map((m) => JSON.parse(JSON.stringify(m)) as unknown);

describe('parseAgentMessage and linkRequestBodyOf', () => {
  it('take a plain request and its body without the schemas, equal to what the schemas make of them', () => {
    for (const m of good) {
      expect(agentRequestOf(m)).toBe(m);
      const msg = m as { op: LinkOp; body: unknown };
      expect(linkRequestBodyOf(msg.op, msg.body)).toBe(msg.body);
      expect(byFastPath(m)).toEqual({ ...bySchemas(m), fast: true });
    }
  });

  it('never take what the schemas refuse, and what they take equals the schemas’ output (each field mutated)', () => {
    let fast = 0;
    let refused = 0;
    const all = good.flatMap((m) => [{ name: 'good', msg: m }, ...mutations(m, ODD)]);
    for (const { name, msg } of all) {
      const zod = bySchemas(msg);
      const ours = byFastPath(msg);
      if (ours.fast) fast++;
      if (!zod.ok) refused++;
      expect(ours.ok, name).toBe(zod.ok);
      if (ours.ok) expect(ours.data, name).toEqual(zod.data);
    }
    // both sides exercised: many mutations taken by the fast path, many refused by the schemas
    expect(fast).toBeGreaterThan(300);
    expect(refused).toBeGreaterThan(1000);
  });

  it('leave every other message and op to the schema', () => {
    for (const m of [
      { type: 'heartbeat' },
      { type: 'result', id: 'run_1', ok: false, fencing_token: 1 },
      { type: 'register', workstation: {}, running_run_ids: [] },
      request('claim', { runner_id: 'r', lease_ms: 30_000 }),
      request('release', { fencing_token: 1 }),
      request('status', report, { id: undefined }),
      { type: 'request', id: '1', op: 'status', target: 'run_1' },
      { type: 'nope' },
      Object.assign(Object.create({ body: report }) as object, request('status', report)),
    ]) {
      const zod = bySchemas(m);
      const ours = byFastPath(m);
      expect(ours.fast, JSON.stringify(m)).toBe(false);
      expect(ours.ok).toBe(zod.ok);
      if (ours.ok) expect(ours.data).toEqual(zod.data);
    }
  });
});

/** A `requests` frame of `good`'s requests (each without its `type`). */
const frame = (rs: unknown[]) => ({
  type: 'requests',
  requests: rs.map((r) => {
    const { type: _t, ...rest } = r as Record<string, unknown>;
    return rest;
  }),
});

describe('parseAgentMessage on a requests frame (LINK_REQUESTS_FORM)', () => {
  it('takes a plain frame as it is, equal to what the schema makes of it', () => {
    const m = JSON.parse(JSON.stringify(frame(good))) as unknown;
    expect(agentRequestsOf(m)).toBe(m);
    const parsed = parseAgentMessage(m);
    expect(parsed.success && parsed.data).toBe(m);
    expect(agentMessageSchema.parse(m)).toEqual(m);
  });

  it('never takes what the schema refuses, and what it takes equals the schema’s output (each field mutated)', () => {
    let fast = 0;
    let refused = 0;
    const base = JSON.parse(JSON.stringify(frame(good.slice(0, 2)))) as unknown;
    for (const { name, msg } of mutations(base, ODD)) {
      const zod = agentMessageSchema.safeParse(msg);
      const ours = parseAgentMessage(msg);
      if (agentRequestsOf(msg)) fast++;
      if (!zod.success) refused++;
      expect(ours.success, name).toBe(zod.success);
      if (ours.success && zod.success) expect(ours.data, name).toEqual(zod.data);
    }
    expect(fast).toBeGreaterThan(20);
    expect(refused).toBeGreaterThan(200);
  });

  it('is bounded: 1 to MAX_LINK_BATCH_REQUESTS requests, by the schema and the fast check alike', () => {
    const one = JSON.parse(JSON.stringify(frame([good[1]]))) as { requests: unknown[] };
    for (const [n, ok] of [
      [0, false],
      [1, true],
      [MAX_LINK_BATCH_REQUESTS, true],
      [MAX_LINK_BATCH_REQUESTS + 1, false],
    ] as const) {
      const m = { type: 'requests', requests: Array.from({ length: n }, () => one.requests[0]) };
      expect(agentMessageSchema.safeParse(m).success, String(n)).toBe(ok);
      expect(parseAgentMessage(m).success, String(n)).toBe(ok);
      expect(agentRequestsOf(m) !== undefined, String(n)).toBe(ok);
    }
  });
});
