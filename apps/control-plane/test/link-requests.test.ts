import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BACKENDS } from '@runt/sql/testing';
import {
  ControlPlaneClient,
  LINK_CLOSE_CODES,
  LINK_REQUESTS_FORM,
  MAX_LINK_BATCH_BYTES,
  MAX_LINK_BATCH_REQUESTS,
  type ControlMessage,
  type ControlReplyMessage,
  type LinkOp,
} from '@runt/protocol';
import { startHarness, type Harness } from './harness.js';
import { eventually, pairAgent, uniqueRuntime, type AgentDouble } from './agent-double.js';

/** Sends one request over the double's link and waits for its reply. */
async function request(
  agent: AgentDouble,
  op: LinkOp,
  target: string,
  body: unknown,
): Promise<ControlReplyMessage> {
  const id = randomUUID();
  agent.link!.send(JSON.stringify({ type: 'request', id, op, target, body }));
  return agent.waitFor('reply', (m) => m.id === id);
}

/** The same call over HTTP, as `{status, body}`. */
async function http(h: Harness, agent: AgentDouble, path: string, body: unknown) {
  const r = await h.api(path, { token: agent.token, body });
  return { status: r.status, body: r.json as unknown };
}

/** A reply as the HTTP answer it stands for. */
const asHttp = (r: ControlReplyMessage) => ({
  status: r.status,
  body: r.status < 300 ? r.result : { error: r.error },
});

describe.each(TEST_BACKENDS)('fenced run calls over the agent link on %s', (backend) => {
  let h: Harness;
  let admin: ControlPlaneClient;
  beforeAll(async () => {
    h = await startHarness(backend, {}, { schedulerTickMs: 100, sweepIntervalMs: 100, linkPingMs: 300 });
    admin = new ControlPlaneClient({ url: h.cp.url, token: h.adminToken, retries: 0 });
  });
  afterAll(async () => h?.close());

  it('claims, renews, appends, reports, moves commands and releases with the answers of HTTP', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'link-ops', [runtime]);
    await agent.connect({ max_runs: 4 });
    const a = (await admin.submitRun({ runtime, command: ['true'] })).run;
    const b = (await admin.submitRun({ runtime, command: ['true'] })).run;
    await agent.waitFor('offer', (m) => m.run.id === a.id);
    await agent.waitFor('offer', (m) => m.run.id === b.id);

    const claim = await request(agent, 'claim', a.id, { runner_id: 'r1', lease_ms: 30_000 });
    expect(claim.status).toBe(200);
    const claimed = claim.result as {
      fencing_token: number;
      next_event_seq: number;
      run: { status: string };
    };
    expect(claimed.run.status).toBe('accepted');
    const token = claimed.fencing_token;
    // A retried claim (the reply was lost with a link) gets the same token back, over either transport.
    expect((await request(agent, 'claim', a.id, { runner_id: 'r1', lease_ms: 30_000 })).result).toMatchObject(
      {
        fencing_token: token,
      },
    );
    expect(
      (await http(h, agent, `/api/runs/${a.id}/claim`, { runner_id: 'r1', lease_ms: 30_000 })).body,
    ).toMatchObject({ fencing_token: token });

    const renew = await request(agent, 'heartbeat', a.id, { fencing_token: token, lease_ms: 30_000 });
    expect(renew).toMatchObject({ status: 200, result: { cancel_requested: false } });

    // Fencing: a stale token is refused with the same status, code and message on both transports.
    for (const stale of [token - 1, token + 1]) {
      const overLink = asHttp(
        await request(agent, 'heartbeat', a.id, { fencing_token: stale, lease_ms: 30_000 }),
      );
      const overHttp = await http(h, agent, `/api/runs/${a.id}/heartbeat`, {
        fencing_token: stale,
        lease_ms: 30_000,
      });
      expect(overLink.status).toBe(409);
      expect(overLink).toEqual(overHttp);
      expect(overLink.body).toMatchObject({ error: { code: 'runner-lease-conflict' } });
      const events = { fencing_token: stale, events: [{ seq: 1, type: 'log', payload: { data: 'x' } }] };
      expect(asHttp(await request(agent, 'events', a.id, events))).toEqual(
        await http(h, agent, `/api/runs/${a.id}/events`, events),
      );
      expect(
        asHttp(await request(agent, 'status', a.id, { fencing_token: stale, status: 'running' })),
      ).toEqual(
        await http(h, agent, `/api/runs/${a.id}/status`, { fencing_token: stale, status: 'running' }),
      );
    }
    // A bad body is a 400 with zod's issues, as over HTTP, and the link stays open.
    const bad = { fencing_token: 'three', lease_ms: 30_000 };
    const badLink = asHttp(await request(agent, 'heartbeat', a.id, bad));
    expect(badLink.status).toBe(400);
    expect(badLink).toEqual(await http(h, agent, `/api/runs/${a.id}/heartbeat`, bad));
    // Unknown run: 404 on both.
    const gone = { fencing_token: token, lease_ms: 30_000 };
    expect(asHttp(await request(agent, 'heartbeat', 'run_nope', gone))).toEqual(
      await http(h, agent, '/api/runs/run_nope/heartbeat', gone),
    );

    const seq = claimed.next_event_seq;
    const events = await request(agent, 'events', a.id, {
      fencing_token: token,
      events: [{ seq, type: 'log', payload: { stream: 'stdout', data: 'hi\n' } }],
    });
    expect(events).toMatchObject({ status: 200, result: { next_event_seq: seq + 1 } });
    const running = await request(agent, 'status', a.id, { fencing_token: token, status: 'running' });
    expect(running).toMatchObject({ status: 200, result: { run: { status: 'running' } } });

    const queued = await admin.queueCommand(a.id, { type: 'exec', command: ['true'] });
    await agent.waitFor('command', (m) => m.run_id === a.id);
    const ack = await request(agent, 'command-ack', queued.command.id, { fencing_token: token });
    expect(ack).toMatchObject({ status: 200, result: { command: { state: 'acked' } } });
    const done = await request(agent, 'command-status', queued.command.id, {
      fencing_token: token,
      state: 'completed',
      exit_code: 0,
    });
    expect(done).toMatchObject({ status: 200, result: { command: { state: 'completed', exit_code: 0 } } });

    const finished = await request(agent, 'status', a.id, {
      fencing_token: token,
      status: 'completed',
      exit_code: 0,
      events: [{ seq: seq + 1, type: 'log', payload: { stream: 'stdout', data: 'bye\n' } }],
      // What agents ask for: the status and the next seq (after `terminal_status`), not the run.
      answer: 'brief',
    });
    expect(finished).toMatchObject({ status: 200 });
    expect(finished.result).toEqual({ status: 'completed', next_event_seq: seq + 3 });
    expect((await admin.getRun(a.id)).run).toMatchObject({ status: 'completed', exit_code: 0 });
    // After the end: 409 run-not-active on both transports.
    const late = { fencing_token: token, lease_ms: 30_000 };
    const lateLink = asHttp(await request(agent, 'heartbeat', a.id, late));
    expect(lateLink).toMatchObject({ status: 409, body: { error: { code: 'run-not-active' } } });
    expect(lateLink).toEqual(await http(h, agent, `/api/runs/${a.id}/heartbeat`, late));
    const logs = (await admin.listEvents(a.id)).events.filter((e) => e.type === 'log');
    expect(logs.map((e) => e.payload.data)).toEqual(['hi\n', 'bye\n']);

    // Release before running: back to the queue (and offered again), twice is still ok.
    const bClaim = await request(agent, 'claim', b.id, { runner_id: 'r1', lease_ms: 30_000 });
    const bToken = (bClaim.result as { fencing_token: number }).fencing_token;
    const before = agent.messages.length;
    expect(await request(agent, 'release', b.id, { fencing_token: bToken })).toMatchObject({
      status: 200,
      result: { ok: true },
    });
    await eventually(
      () => agent.messages.slice(before).some((m: ControlMessage) => m.type === 'offer' && m.run.id === b.id),
      'the released run offered again',
    );
    expect((await admin.getRun(b.id)).run.attempt).toBe(2);

    // The requests are counted by op and status on /metrics.
    const metrics = await (await fetch(`${h.cp.url}/metrics`)).text();
    expect(metrics).toMatch(/runt_cp_link_requests_total\{op="claim",status="200"\} [1-9]/);
    expect(metrics).toMatch(/runt_cp_link_requests_total\{op="heartbeat",status="409"\} [1-9]/);
    expect(metrics).toMatch(/runt_cp_link_messages_received_total\{type="request"\} [1-9]/);
    expect(agent.closed).toBeUndefined();
  });

  it('hands back a never started run, answered, on either transport: queued again, no attempt used', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'link-hand-back', [runtime]);
    await agent.connect({ max_runs: 4 });
    // The control plane lists the ops beyond the base set it serves, so agents may send them.
    expect((await agent.waitFor('registered')).ops).toContain('hand-back');
    const a = (await admin.submitRun({ runtime, command: ['true'] })).run;
    const b = (await admin.submitRun({ runtime, command: ['true'] })).run;
    await agent.waitFor('offer', (m) => m.run.id === a.id);
    await agent.waitFor('offer', (m) => m.run.id === b.id);
    const claim = async (id: string) =>
      (
        (await request(agent, 'claim', id, { runner_id: 'r1', lease_ms: 30_000 })).result as {
          fencing_token: number;
        }
      ).fencing_token;
    const aToken = await claim(a.id);
    const bToken = await claim(b.id);

    const before = agent.messages.length;
    expect(await request(agent, 'hand-back', a.id, { fencing_token: aToken })).toMatchObject({
      status: 200,
      result: { handed_back: true, status: 'queued' },
    });
    expect(await http(h, agent, `/api/runs/${b.id}/hand-back`, { fencing_token: bToken })).toEqual({
      status: 200,
      body: { handed_back: true, status: 'queued' },
    });
    for (const id of [a.id, b.id]) {
      await eventually(
        () => agent.messages.slice(before).some((m: ControlMessage) => m.type === 'offer' && m.run.id === id),
        'the handed back run offered again',
      );
      expect((await admin.getRun(id)).run.attempt).toBe(1);
    }
    // Asked again (its answer was lost with a link): nothing to do, said so, on both transports.
    expect(await request(agent, 'hand-back', a.id, { fencing_token: aToken })).toMatchObject({
      status: 200,
      result: { handed_back: false },
    });
    expect(await http(h, agent, `/api/runs/${b.id}/hand-back`, { fencing_token: bToken })).toEqual({
      status: 200,
      body: { handed_back: false },
    });
    // A run cancelled while accepted ends cancelled: the answer says so.
    for (const id of [a.id, b.id]) await admin.cancelRun(id); // their slots free
    const c = (await admin.submitRun({ runtime, command: ['true'] })).run;
    await agent.waitFor('offer', (m) => m.run.id === c.id);
    const cToken = await claim(c.id);
    await admin.cancelRun(c.id);
    expect(await request(agent, 'hand-back', c.id, { fencing_token: cToken })).toMatchObject({
      status: 200,
      result: { handed_back: true, status: 'cancelled' },
    });
    expect((await admin.getRun(c.id)).run.status).toBe('cancelled');
    expect(agent.closed).toBeUndefined();
  });

  it('answers a frame of reports with ONE replies message: each fenced as if alone (a stale token its own 409), in order', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'link-frame', [runtime]);
    await agent.connect({ max_runs: 4 });
    expect((await agent.waitFor('registered')).ops).toContain(LINK_REQUESTS_FORM);
    const runs = [];
    for (let i = 0; i < 3; i++) runs.push((await admin.submitRun({ runtime, command: ['true'] })).run);
    const tokens: number[] = [];
    for (const run of runs) {
      await agent.waitFor('offer', (m) => m.run.id === run.id);
      const claim = await request(agent, 'claim', run.id, { runner_id: 'r1', lease_ms: 30_000 });
      tokens.push((claim.result as { fencing_token: number }).fencing_token);
    }
    const [a, b, c] = runs as [(typeof runs)[0], (typeof runs)[0], (typeof runs)[0]];
    const end = (token: number) => ({
      fencing_token: token,
      status: 'completed',
      exit_code: 0,
      answer: 'brief',
    });
    const stale = end(tokens[1]! + 1);
    const ids = ['f1', 'f2', 'f3', 'f4'];
    const before = agent.messages.length;
    agent.link!.send(
      JSON.stringify({
        type: 'requests',
        requests: [
          { id: ids[0], op: 'status', target: a.id, body: end(tokens[0]!) },
          { id: ids[1], op: 'status', target: b.id, body: stale },
          { id: ids[2], op: 'status', target: c.id, body: end(tokens[2]!) },
          // A bad body in a frame is its own 400, as alone.
          { id: ids[3], op: 'status', target: c.id, body: { fencing_token: 'x', status: 'completed' } },
        ],
      }),
    );
    const frame = await agent.waitFor('replies');
    expect(frame.replies.map((r) => [r.id, r.status])).toEqual([
      ['f1', 200],
      ['f2', 409],
      ['f3', 200],
      ['f4', 400],
    ]);
    expect(frame.replies[0]!.result).toEqual({ status: 'completed', next_event_seq: 2 });
    // The stale report's answer is the one HTTP gives the same call, and its run is untouched.
    const asReply = (i: number) => asHttp({ type: 'reply', ...frame.replies[i]! });
    expect(asReply(1)).toEqual(await http(h, agent, `/api/runs/${b.id}/status`, stale));
    expect(asReply(1)).toMatchObject({ status: 409, body: { error: { code: 'runner-lease-conflict' } } });
    expect(asReply(3)).toEqual(
      await http(h, agent, `/api/runs/${c.id}/status`, { fencing_token: 'x', status: 'completed' }),
    );
    expect((await admin.getRun(a.id)).run.status).toBe('completed');
    expect((await admin.getRun(b.id)).run.status).toBe('accepted');
    expect((await admin.getRun(c.id)).run.status).toBe('completed');
    // One message answered the frame: no lone reply for any of its requests.
    const after = agent.messages.slice(before);
    expect(after.filter((m) => m.type === 'replies')).toHaveLength(1);
    expect(after.some((m) => m.type === 'reply' && ids.includes(m.id))).toBe(false);
    const metrics = await (await fetch(`${h.cp.url}/metrics`)).text();
    expect(metrics).toMatch(/runt_cp_link_messages_received_total\{type="requests"\} [1-9]/);
    expect(agent.closed).toBeUndefined();
  });

  it('charges a frame per request to the link’s budget (a flood of frames is closed as one of requests is), and bounds its bytes', async () => {
    const request = (i: number) => ({
      id: `h${i}`,
      op: 'heartbeat',
      target: 'run_none',
      body: { fencing_token: 1, lease_ms: 30_000 },
    });
    const frame = JSON.stringify({
      type: 'requests',
      requests: Array.from({ length: MAX_LINK_BATCH_REQUESTS }, (_, i) => request(i)),
    });
    // Within the budget (one slot: 400 requests): three frames of 100, every request answered.
    const fits = await pairAgent(h, 'frames-fit', [uniqueRuntime()]);
    await fits.connect({ max_runs: 1 });
    for (let i = 0; i < 3; i++) fits.link!.send(frame);
    await eventually(() => fits.messages.filter((m) => m.type === 'replies').length === 3, 'three replies');
    for (const m of fits.messages)
      if (m.type === 'replies') expect(m.replies.every((r) => r.status === 404)).toBe(true);
    expect(fits.closed).toBeUndefined();
    // Past it: six frames of 100 at once are 600 requests on a bucket of 400 (charged per frame,
    // they would be 6 messages and pass).
    const flood = await pairAgent(h, 'frames-flood', [uniqueRuntime()]);
    await flood.connect({ max_runs: 1 });
    for (let i = 0; i < 6 && flood.link!.readyState === flood.link!.OPEN; i++) flood.link!.send(frame);
    expect((await flood.waitClosed()).code).toBe(LINK_CLOSE_CODES.rateLimited);
    // A frame larger than MAX_LINK_BATCH_BYTES is invalid, though the link takes larger messages.
    const big = await pairAgent(h, 'frames-big', [uniqueRuntime()]);
    await big.connect({ max_runs: 1 });
    const pad = 'x'.repeat(Math.ceil(MAX_LINK_BATCH_BYTES / 2));
    big.link!.send(
      JSON.stringify({
        type: 'requests',
        requests: [0, 1].map((i) => ({ ...request(i), body: { ...request(i).body, pad } })),
      }),
    );
    expect(await big.waitClosed()).toEqual({
      code: LINK_CLOSE_CODES.invalid,
      reason: `requests frame over ${MAX_LINK_BATCH_BYTES} bytes`,
    });
  });

  it('refuses a frame over MAX_LINK_BATCH_BYTES on its size before parsing it; a lone request that large is answered', async () => {
    const agent = await pairAgent(h, 'frames-oversize', [uniqueRuntime()]);
    const over = 'x'.repeat(MAX_LINK_BATCH_BYTES);
    const sizeRefusal = {
      code: LINK_CLOSE_CODES.invalid,
      reason: `requests frame over ${MAX_LINK_BATCH_BYTES} bytes`,
    };
    // Not JSON at all past its opening: refused on its size (a parse would say `invalid message`).
    await agent.connect({ max_runs: 1 });
    agent.link!.send(`{"type":"requests","requests":[${over}`);
    expect(await agent.waitClosed()).toEqual(sizeRefusal);
    // The same frame with `type` last is known for one only once parsed: refused on its size then.
    await agent.connect({ max_runs: 1 });
    const body = { fencing_token: 1, lease_ms: 30_000, pad: over };
    agent.link!.send(
      JSON.stringify({
        requests: [{ id: 'b1', op: 'heartbeat', target: 'run_none', body }],
        type: 'requests',
      }),
    );
    expect(await agent.waitClosed()).toEqual(sizeRefusal);
    // The bound is a frame's, not the link's: a lone request of that size gets its reply (404: no such run).
    await agent.connect({ max_runs: 1 });
    agent.link!.send(
      JSON.stringify({ type: 'request', id: 'big', op: 'heartbeat', target: 'run_none', body }),
    );
    expect((await agent.waitFor('reply', (m) => m.id === 'big')).status).toBe(404);
    expect(agent.closed).toBeUndefined();
  });

  it('serves a frame of more requests than the whole request budget up to what it holds, the rest 429 each with its Retry-After', async () => {
    // A request budget configured below a frame's size: 10 requests, one back every 2 s.
    const tiny = await startHarness(
      backend,
      {
        linkMessageRate: {
          perSecond: 20,
          burst: 200,
          requestBurstPerSlot: 10,
          requestsPerSlotPerSecond: 0.5,
        },
      },
      { linkPingMs: 300 },
    );
    try {
      // The link counters are the process's (module-level): the refusals of this test are the difference.
      const refusals = async () =>
        Number(
          /runt_cp_link_requests_total\{op="heartbeat",status="429"\} (\d+)/.exec(
            await (await fetch(`${tiny.cp.url}/metrics`)).text(),
          )?.[1] ?? 0,
        );
      const before = await refusals();
      const agent = await pairAgent(tiny, 'frames-tiny-budget', [uniqueRuntime()]);
      await agent.connect({ max_runs: 1 });
      const frame = JSON.stringify({
        type: 'requests',
        requests: Array.from({ length: 30 }, (_, i) => ({
          id: `t${i}`,
          op: 'heartbeat',
          target: 'run_none',
          body: { fencing_token: 1, lease_ms: 30_000 },
        })),
      });
      agent.link!.send(frame);
      const { replies } = await agent.waitFor('replies');
      expect(replies.map((r) => r.id)).toEqual(Array.from({ length: 30 }, (_, i) => `t${i}`));
      // The bucket's 10 served (404: no such run), in the frame's order.
      expect(replies.slice(0, 10).every((r) => r.status === 404)).toBe(true);
      // The other 20 refused as HTTP refuses past a limit, each told when its token is back (one
      // every 2 s), so retried alone they come back spread out at the bucket's pace.
      for (const r of replies.slice(10))
        expect(r).toMatchObject({ status: 429, error: { code: 'rate-limited' } });
      expect(replies.slice(10).map((r) => r.retry_after_s)).toEqual(
        Array.from({ length: 20 }, (_, i) => 2 * (i + 1)),
      );
      expect(agent.closed).toBeUndefined();
      // Told 2 s, asked again alone: served.
      await new Promise((r) => setTimeout(r, 2_100));
      expect(
        (await request(agent, 'heartbeat', 'run_none', { fencing_token: 1, lease_ms: 30_000 })).status,
      ).toBe(404);
      // On an empty bucket such a frame is refused as a lone request is: the link closed.
      agent.link!.send(frame);
      expect((await agent.waitClosed()).code).toBe(LINK_CLOSE_CODES.rateLimited);
      expect((await refusals()) - before).toBe(20);
    } finally {
      await tiny.close();
    }
  });

  it('never throttles a busy agent’s requests (budget by slots), and still closes a flooding one', async () => {
    const runtime = uniqueRuntime();
    const busy = await pairAgent(h, 'busy', [runtime]);
    await busy.connect({ max_runs: 4 });
    // 1,000 requests at once: five times the control-message burst, within 4 slots' request budget.
    const ids = Array.from({ length: 1000 }, () => randomUUID());
    for (const id of ids)
      busy.link!.send(
        JSON.stringify({
          type: 'request',
          id,
          op: 'heartbeat',
          target: 'run_none',
          body: { fencing_token: 1, lease_ms: 30_000 },
        }),
      );
    await eventually(
      () => busy.messages.filter((m) => m.type === 'reply').length === ids.length,
      'every reply',
      60_000,
    );
    expect(busy.messages.filter((m) => m.type === 'reply').every((m) => m.status === 404)).toBe(true);
    expect(busy.closed).toBeUndefined();

    const flood = await pairAgent(h, 'flood', [uniqueRuntime()]);
    await flood.connect({ max_runs: 1 });
    const message = JSON.stringify({
      type: 'request',
      id: 'same',
      op: 'heartbeat',
      target: 'run_none',
      body: { fencing_token: 1, lease_ms: 30_000 },
    });
    for (let i = 0; i < 5000 && flood.link!.readyState === flood.link!.OPEN; i++) flood.link!.send(message);
    expect((await flood.waitClosed()).code).toBe(LINK_CLOSE_CODES.rateLimited);
    expect((await h.api('/healthz')).status).toBe(200);
  }, 90_000);
});
