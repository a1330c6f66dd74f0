import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { ControlPlaneClient, followRunEvents, parseSse, type RunEvent } from '@runt/protocol';
import { startHarness, type Harness } from './harness.js';
import { eventually, pairAgent, uniqueRuntime } from './agent-double.js';

const errorShape = { error: { code: expect.any(String), message: expect.any(String) } };
const log = (seq: number, data = `line ${seq}\n`) => ({
  seq,
  type: 'log' as const,
  payload: { stream: 'stdout', data },
});

describe.each(TEST_BACKENDS)('runs on %s', (backend) => {
  let h: Harness;
  let admin: ControlPlaneClient;
  beforeAll(async () => {
    // Configured as docs/runs.md asks of a Postgres install (a secret key), so the start-up
    // warning of a control plane without one is not among the warnings checked below.
    h = await startHarness(
      backend,
      {},
      { schedulerTickMs: 100, sweepIntervalMs: 100, secretKey: randomBytes(32).toString('base64') },
    );
    admin = new ControlPlaneClient({ url: h.cp.url, token: h.adminToken, retries: 0 });
  });
  afterAll(async () => h?.close());

  /** A linked agent with its own runtime, plus a run submitted for it and claimed. */
  async function claimedRun(extra: Record<string, unknown> = {}) {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, `box-${runtime}`, [runtime]);
    await agent.connect();
    const { run } = await admin.submitRun({ runtime, command: ['echo', 'hi'], ...extra });
    const offer = await agent.waitFor('offer', (m) => m.run.id === run.id);
    const claim = await agent.client.claimRun(offer.run.id, { runner_id: 'r1', lease_ms: 30_000 });
    return { runtime, agent, run, claim, token: claim.fencing_token };
  }

  it('submit → offer over the link → claim → events → running → completed', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'life-box', [runtime]);
    await agent.connect();
    const submitted = await admin.submitRun({
      runtime,
      image: 'busybox',
      command: ['sh', '-c', 'echo ready'],
      env: { A: '1' },
      workdir: '/w',
      ready_when: { log_line: 'ready' },
      max_attempts: 2,
    });
    expect(submitted.run).toMatchObject({
      // On Postgres a lone submit places its run and, its link being held here, sends the offer
      // itself before answering (docs/runs.md#scheduler); on PGlite a pass places it after.
      status: backend === 'postgres' ? 'offered' : 'queued',
      attempt: 1,
      max_attempts: 2,
      ready_when: { log_line: 'ready' },
      env: { A: '1' },
    });
    const offer = await agent.waitFor('offer', (m) => m.run.id === submitted.run.id);
    expect(offer.run).toMatchObject({ status: 'offered', workstation_id: agent.workstationId });

    const claim = await agent.client.claimRun(submitted.run.id, { runner_id: 'runner-1', lease_ms: 30_000 });
    expect(claim).toMatchObject({
      next_event_seq: 1,
      run: { status: 'accepted', lease: { fencing_token: claim.fencing_token } },
    });
    // A retried claim by the same runner keeps the token.
    expect(
      (await agent.client.claimRun(submitted.run.id, { runner_id: 'runner-1', lease_ms: 30_000 }))
        .fencing_token,
    ).toBe(claim.fencing_token);

    const token = claim.fencing_token;
    expect(
      await agent.client.appendEvents(submitted.run.id, {
        fencing_token: token,
        events: [log(1), log(2, 'ready\n')],
      }),
    ).toEqual({ next_event_seq: 3 });
    expect(
      (await agent.client.reportStatus(submitted.run.id, { fencing_token: token, status: 'running' })).run
        .status,
    ).toBe('running');
    const hb = await agent.client.heartbeatRun(submitted.run.id, { fencing_token: token, lease_ms: 30_000 });
    expect(hb.cancel_requested).toBe(false);
    const done = await agent.client.reportStatus(submitted.run.id, {
      fencing_token: token,
      status: 'completed',
      exit_code: 0,
    });
    expect(done.run).toMatchObject({ status: 'completed', exit_code: 0, failure_kind: null, lease: null });
    expect(done.run.started_at).toEqual(expect.any(String));
    expect(done.run.finished_at).toEqual(expect.any(String));

    const events = await admin.listEvents(submitted.run.id);
    expect(events.run_status).toBe('completed');
    expect(events.events.map((e) => [e.seq, e.type])).toEqual([
      [1, 'log'],
      [2, 'log'],
      [3, 'terminal_status'],
    ]);
    expect(events.events[2]!.payload).toMatchObject({ status: 'completed', exit_code: 0 });
  });

  it('appends are gap-free and idempotent: a resent batch adds nothing, a gap is refused', async () => {
    const { run, agent, token } = await claimedRun();
    const batch = { fencing_token: token, events: [log(1), log(2), log(3)] };
    expect((await agent.client.appendEvents(run.id, batch)).next_event_seq).toBe(4);
    expect((await agent.client.appendEvents(run.id, batch)).next_event_seq).toBe(4);
    expect(
      (await agent.client.appendEvents(run.id, { fencing_token: token, events: [log(3), log(4)] }))
        .next_event_seq,
    ).toBe(5);
    const gap = await h.api(`/api/runs/${run.id}/events`, {
      token: agent.token,
      body: { fencing_token: token, events: [log(7)] },
    });
    expect(gap.status).toBe(409);
    expect(gap.json).toMatchObject({ error: { code: 'event-seq-gap', details: { next_event_seq: 5 } } });
    const page = await admin.listEvents(run.id);
    expect(page.events.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(page.events.map((e) => e.payload.data)).toEqual(['line 1\n', 'line 2\n', 'line 3\n', 'line 4\n']);
  });

  it('answers 409 run-not-active to every report on a terminal run', async () => {
    const { run, agent, token } = await claimedRun();
    await agent.client.reportStatus(run.id, { fencing_token: token, status: 'failed', exit_code: 3 });
    expect((await admin.getRun(run.id)).run).toMatchObject({
      status: 'failed',
      failure_kind: 'nonzero-exit',
      exit_code: 3,
    });
    const calls: Array<[string, unknown]> = [
      [`/api/runs/${run.id}/events`, { fencing_token: token, events: [log(1)] }],
      [`/api/runs/${run.id}/status`, { fencing_token: token, status: 'completed' }],
      [`/api/runs/${run.id}/heartbeat`, { fencing_token: token, lease_ms: 5000 }],
      [`/api/runs/${run.id}/claim`, { runner_id: 'r1', lease_ms: 5000 }],
    ];
    for (const [path, body] of calls) {
      const r = await h.api(path, { token: agent.token, body });
      expect(r.status).toBe(409);
      expect(r.json).toEqual({ error: { code: 'run-not-active', message: 'run is no longer active' } });
    }
    const cancel = await h.api(`/api/runs/${run.id}/cancel`, { token: h.adminToken, body: {} });
    expect(cancel.json.error.code).toBe('run-not-active');
  });

  it('cancels a queued run at once', async () => {
    const { run } = await admin.submitRun({ runtime: uniqueRuntime(), command: ['true'] });
    const cancelled = await admin.cancelRun(run.id);
    expect(cancelled.run).toMatchObject({
      status: 'cancelled',
      failure_kind: 'cancelled',
      cancel_requested: true,
    });
    const events = await admin.listEvents(run.id);
    expect(events.events.map((e) => e.type)).toEqual(['terminal_status']);
    expect((await h.api(`/api/runs/${run.id}/cancel`, { token: h.adminToken, body: {} })).status).toBe(409);
  });

  it('cancels an offered run at once and tells its agent; a late claim gets run-not-active', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'offer-cancel', [runtime]);
    await agent.connect();
    const { run } = await admin.submitRun({ runtime, command: ['true'] });
    await agent.waitFor('offer', (m) => m.run.id === run.id);
    expect((await admin.cancelRun(run.id)).run.status).toBe('cancelled');
    await agent.waitFor('cancel', (m) => m.run_id === run.id);
    const late = await h.api(`/api/runs/${run.id}/claim`, {
      token: agent.token,
      body: { runner_id: 'r', lease_ms: 5000 },
    });
    expect(late.json.error.code).toBe('run-not-active');
  });

  it('cancels a running run through its agent: cancel_requested, a cancel message, then the agent reports cancelled', async () => {
    const { run, agent, token } = await claimedRun();
    await agent.client.reportStatus(run.id, { fencing_token: token, status: 'running' });
    const requested = await admin.cancelRun(run.id);
    expect(requested.run).toMatchObject({ status: 'running', cancel_requested: true });
    await agent.waitFor('cancel', (m) => m.run_id === run.id);
    expect(
      (await agent.client.heartbeatRun(run.id, { fencing_token: token, lease_ms: 30_000 })).cancel_requested,
    ).toBe(true);
    expect((await admin.cancelRun(run.id)).run.status).toBe('running'); // asking again is harmless
    const ended = await agent.client.reportStatus(run.id, { fencing_token: token, status: 'cancelled' });
    expect(ended.run).toMatchObject({ status: 'cancelled', failure_kind: 'cancelled' });
  });

  it('moves commands queue → wake-up → list → ack → status, and refuses them on an ended run', async () => {
    const { run, agent, token } = await claimedRun();
    const q = await admin.queueCommand(run.id, { type: 'exec', command: ['ls', '-la'] });
    expect(q.command).toMatchObject({ run_id: run.id, seq: 1, state: 'pending' });
    await agent.waitFor('command', (m) => m.run_id === run.id);
    const second = await admin.queueCommand(run.id, { type: 'exec', command: ['pwd'] });
    expect(second.command.seq).toBe(2);
    expect((await agent.client.listCommands(run.id)).commands.map((c) => c.seq)).toEqual([1, 2]);
    expect((await agent.client.listCommands(run.id, 1)).commands.map((c) => c.id)).toEqual([
      second.command.id,
    ]);
    expect((await agent.client.ackCommand(q.command.id, { fencing_token: token })).command.state).toBe(
      'acked',
    );
    expect((await agent.client.ackCommand(q.command.id, { fencing_token: token })).command.state).toBe(
      'acked',
    );
    const stale = await h.api(`/api/commands/${q.command.id}/status`, {
      token: agent.token,
      body: { fencing_token: token + 100, state: 'completed' },
    });
    expect(stale.json.error.code).toBe('runner-lease-conflict');
    const fin = await agent.client.commandStatus(q.command.id, {
      fencing_token: token,
      state: 'completed',
      exit_code: 0,
    });
    expect(fin.command).toMatchObject({ state: 'completed', exit_code: 0, finished_at: expect.any(String) });
    const again = await h.api(`/api/commands/${q.command.id}/status`, {
      token: agent.token,
      body: { fencing_token: token, state: 'failed' },
    });
    expect(again.json.error.code).toBe('command-not-active');
    await agent.client.reportStatus(run.id, { fencing_token: token, status: 'completed', exit_code: 0 });
    const list = await h.api(`/api/runs/${run.id}/commands`, { token: h.adminToken });
    expect(list.json.commands.map((c: { state: string }) => c.state)).toEqual(['completed', 'cancelled']);
    const late = await h.api(`/api/runs/${run.id}/commands`, {
      token: h.adminToken,
      body: { type: 'exec', command: ['ls'] },
    });
    expect(late.json.error.code).toBe('run-not-active');
  });

  it('pages events by after_seq and follows them live over text/event-stream until the terminal event', async () => {
    const { run, agent, token } = await claimedRun();
    await agent.client.appendEvents(run.id, {
      fencing_token: token,
      events: [1, 2, 3, 4, 5].map((s) => log(s)),
    });
    const p1 = await admin.listEvents(run.id, { after_seq: 0, limit: 2 });
    expect(p1).toMatchObject({ next_after_seq: 2, run_status: 'accepted' });
    const p2 = await admin.listEvents(run.id, { after_seq: p1.next_after_seq, limit: 2 });
    expect(p2.events.map((e) => e.seq)).toEqual([3, 4]);

    const seen: RunEvent[] = [];
    const following = (async () => {
      const it = followRunEvents({ url: h.cp.url, token: h.adminToken, runId: run.id, afterSeq: 2 });
      for (;;) {
        const next = await it.next();
        if (next.done) return next.value;
        seen.push(next.value);
      }
    })();
    await eventually(() => seen.length >= 3, 'the existing events on the stream');
    await agent.client.appendEvents(run.id, { fencing_token: token, events: [log(6), log(7)] });
    await eventually(() => seen.length >= 5, 'live events on the stream');
    await agent.client.reportStatus(run.id, { fencing_token: token, status: 'completed', exit_code: 0 });
    expect(await following).toBe('completed');
    expect(seen.map((e) => e.seq)).toEqual([3, 4, 5, 6, 7, 8]);
    expect(seen[5]!.type).toBe('terminal_status');

    // On the wire: `id:` is the seq, Last-Event-ID resumes, the stream ends after the terminal event.
    const res = await fetch(`${h.cp.url}/api/runs/${run.id}/events`, {
      headers: { authorization: `Bearer ${h.adminToken}`, accept: 'text/event-stream', 'last-event-id': '6' },
    });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const frames = [];
    for await (const m of parseSse(res.body!)) frames.push(m);
    expect(frames.map((f) => [f.event, f.id])).toEqual([
      ['message', '7'],
      ['message', '8'],
      ['end', undefined],
    ]);
  });

  it('serves the polling path to that workstation only', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'poller', [runtime]);
    await agent.registerHttp(); // no link: polls instead
    const other = await pairAgent(h, 'nosy', ['nothing']);
    const { run } = await admin.submitRun({ runtime, command: ['true'] });
    const offered = await eventually(
      async () => (await agent.client.offeredRuns(agent.workstationId)).runs.find((r) => r.id === run.id),
      'the offer on the polling path',
    );
    expect(offered.status).toBe('offered');
    expect(
      (await h.api(`/api/workstations/${agent.workstationId}/runs?status=offered`, { token: other.token }))
        .status,
    ).toBe(403);
    expect((await agent.client.claimRun(run.id, { runner_id: 'p', lease_ms: 10_000 })).run.status).toBe(
      'accepted',
    );
  });

  it('keeps workstations out of each other’s runs (403)', async () => {
    const { run, agent, token } = await claimedRun();
    const other = await pairAgent(h, 'intruder', ['other']);
    const calls: Array<[string, unknown]> = [
      [`/api/runs/${run.id}/claim`, { runner_id: 'x', lease_ms: 5000 }],
      [`/api/runs/${run.id}/heartbeat`, { fencing_token: token, lease_ms: 5000 }],
      [`/api/runs/${run.id}/events`, { fencing_token: token, events: [log(1)] }],
      [`/api/runs/${run.id}/status`, { fencing_token: token, status: 'running' }],
    ];
    for (const [path, body] of calls) {
      const r = await h.api(path, { token: other.token, body });
      expect(r.status, path).toBe(403);
      expect(r.json).toMatchObject(errorShape);
    }
    expect((await h.api(`/api/runs/${run.id}`, { token: other.token })).status).toBe(403);
    expect((await h.api(`/api/runs/${run.id}/commands`, { token: other.token })).status).toBe(403);
    expect((await h.api(`/api/runs/${run.id}`, { token: agent.token })).json.run.id).toBe(run.id);
    expect((await h.api(`/api/runs/${run.id}/events`, { token: agent.token })).status).toBe(403); // events are the operator's
    expect(
      (await h.api('/api/runs', { token: h.adminToken, method: 'POST', body: { runtime: 'x' } })).status,
    ).toBe(201);
    expect((await h.api('/api/runs', { token: agent.token, body: { runtime: 'x' } })).status).toBe(403);
  });

  it('stores bundles by verified sha256 and serves them to the admin and the run’s workstation', async () => {
    const bytes = new TextEncoder().encode(`bundle for ${backend} ${Date.now()}`);
    const sha = createHash('sha256').update(bytes).digest('hex');
    const wrong = await fetch(`${h.cp.url}/api/bundles/${'0'.repeat(64)}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${h.adminToken}` },
      body: bytes,
    });
    expect(wrong.status).toBe(400);
    expect(await wrong.json()).toMatchObject({ error: { code: 'bundle-digest-mismatch' } });
    expect((await admin.uploadBundle(sha, bytes)).bundle).toEqual({
      sha256: sha,
      size_bytes: bytes.byteLength,
    });
    expect((await admin.uploadBundle(sha, bytes)).bundle.sha256).toBe(sha); // idempotent
    expect(Buffer.from(await admin.downloadBundle(sha))).toEqual(Buffer.from(bytes));
    const missing = await h.api('/api/runs', {
      token: h.adminToken,
      body: { runtime: 'x', bundle: { sha256: 'a'.repeat(64) } },
    });
    expect(missing.status).toBe(400);
    expect(missing.json.error.code).toBe('bundle-missing');

    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'bundle-box', [runtime]);
    await expect(agent.client.downloadBundle(sha)).rejects.toMatchObject({ status: 403 });
    await agent.connect();
    const { run } = await admin.submitRun({ runtime, command: ['true'], bundle: { sha256: sha } });
    expect(run.bundle).toEqual({ sha256: sha });
    await agent.waitFor('offer', (m) => m.run.id === run.id);
    expect(Buffer.from(await agent.client.downloadBundle(sha))).toEqual(Buffer.from(bytes));
    expect((await h.api(`/api/bundles/${'b'.repeat(64)}`, { token: h.adminToken })).status).toBe(404);
    expect((await h.api('/api/bundles/not-a-digest', { token: h.adminToken })).status).toBe(400);
  });

  it('lists runs newest first with filters and a cursor', async () => {
    const runtime = uniqueRuntime();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await admin.submitRun({ runtime, command: [`${i}`] })).run.id);
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await admin.listRuns({ runtime, limit: 2, ...(cursor ? { cursor } : {}) });
      expect(page.runs.length).toBeLessThanOrEqual(2);
      seen.push(...page.runs.map((r) => r.id));
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());
    await admin.cancelRun(ids[0]!);
    expect((await admin.listRuns({ runtime, status: 'cancelled' })).runs.map((r) => r.id)).toEqual([ids[0]]);
    expect((await admin.listRuns({ runtime, status: 'queued' })).runs).toHaveLength(4);
  });

  it('returns the same run for a retried submit with the same idempotency key', async () => {
    const body = {
      runtime: uniqueRuntime(),
      command: ['true'],
      idempotency_key: `key-${backend}-${Date.now()}`,
    };
    const first = await h.api('/api/runs', { token: h.adminToken, body });
    const second = await h.api('/api/runs', { token: h.adminToken, body });
    expect([first.status, second.status]).toEqual([201, 200]);
    expect(second.json.run.id).toBe(first.json.run.id);
  });

  it('logged no failed scheduling pass, sweep or unhandled error', () => {
    const bad = h.logs
      .map((l) => JSON.parse(l) as { level: number; msg: string })
      .filter((l) => l.level >= 40);
    expect(bad).toEqual([]);
  });

  describe('bad input gets a 4xx with the error shape', () => {
    const cases: Array<[string, () => Promise<{ status: number; json: unknown }>, number]> = [
      [
        'submit without runtime',
        () => h.api('/api/runs', { token: h.adminToken, body: { command: ['x'] } }),
        400,
      ],
      [
        'submit with a bad env name',
        () => h.api('/api/runs', { token: h.adminToken, body: { runtime: 'x', env: { 'A-B': '1' } } }),
        400,
      ],
      [
        'submit with a bad label',
        () =>
          h.api('/api/runs', {
            token: h.adminToken,
            body: { runtime: 'x', placement: { labels: { 'bad key!': 'x' } } },
          }),
        400,
      ],
      [
        'submit pinned to an unknown workstation',
        () =>
          h.api('/api/runs', {
            token: h.adminToken,
            body: { runtime: 'x', placement: { workstation_id: 'ws_nope' } },
          }),
        400,
      ],
      [
        'submit a process run without a command',
        () => h.api('/api/runs', { token: h.adminToken, body: { runtime: 'process' } }),
        400,
      ],
      [
        'submit a docker run without an image',
        () => h.api('/api/runs', { token: h.adminToken, body: { runtime: 'docker', command: ['true'] } }),
        400,
      ],
      [
        'submit a podman run without an image',
        () => h.api('/api/runs', { token: h.adminToken, body: { runtime: 'podman' } }),
        400,
      ],
      [
        'submit with max_attempts 0',
        () => h.api('/api/runs', { token: h.adminToken, body: { runtime: 'x', max_attempts: 0 } }),
        400,
      ],
      ['submit without a token', () => h.api('/api/runs', { body: { runtime: 'x' } }), 401],
      ['read an unknown run', () => h.api('/api/runs/run_nope', { token: h.adminToken }), 404],
      [
        'cancel an unknown run',
        () => h.api('/api/runs/run_nope/cancel', { token: h.adminToken, body: {} }),
        404,
      ],
      ['events of an unknown run', () => h.api('/api/runs/run_nope/events', { token: h.adminToken }), 404],
      [
        'follow an unknown run',
        () =>
          h.api('/api/runs/run_nope/events', {
            token: h.adminToken,
            headers: { accept: 'text/event-stream' },
          }),
        404,
      ],
      [
        'a negative after_seq',
        () => h.api('/api/runs/run_nope/events?after_seq=-1', { token: h.adminToken }),
        400,
      ],
      ['a forged cursor', () => h.api('/api/runs?cursor=bm9wZQ', { token: h.adminToken }), 400],
      ['a limit over the maximum', () => h.api('/api/runs?limit=100000', { token: h.adminToken }), 400],
      ['an unknown status filter', () => h.api('/api/runs?status=sleeping', { token: h.adminToken }), 400],
      [
        'a command of an unknown type',
        () => h.api('/api/runs/run_nope/commands', { token: h.adminToken, body: { type: 'teleport' } }),
        400,
      ],
      [
        'ack of an unknown command',
        () => h.api('/api/commands/cmd_nope/ack', { token: h.adminToken, body: { fencing_token: 1 } }),
        403,
      ],
      ['a plain GET of the agent link', () => h.api('/api/agent/link', { token: h.adminToken }), 426],
    ];
    it.each(cases)('%s', async (_name, call, status) => {
      const r = await call();
      expect(r.status).toBe(status);
      expect(r.json).toMatchObject(errorShape);
    });

    it('agent calls with bad bodies or unknown runs', async () => {
      const agent = await pairAgent(h, 'typo-agent', ['typo']);
      const short = await h.api('/api/runs/run_nope/claim', {
        token: agent.token,
        body: { runner_id: 'r', lease_ms: 10 },
      });
      expect(short.status).toBe(400);
      expect(short.json.error.message).toMatch(/^lease_ms: /);
      expect(
        (
          await h.api('/api/runs/run_nope/claim', {
            token: agent.token,
            body: { runner_id: 'r', lease_ms: 5000 },
          })
        ).status,
      ).toBe(404);
      expect(
        (
          await h.api('/api/runs/run_nope/events', {
            token: agent.token,
            body: { fencing_token: 1, events: [] },
          })
        ).status,
      ).toBe(400);
      expect(
        (
          await h.api('/api/runs/run_nope/events', {
            token: agent.token,
            body: { fencing_token: 1, events: [log(1)] },
          })
        ).status,
      ).toBe(404);
      expect(
        (
          await h.api('/api/runs/run_nope/status', {
            token: agent.token,
            body: { fencing_token: 1, status: 'queued' },
          })
        ).status,
      ).toBe(400);
      expect(
        (await h.api('/api/commands/cmd_nope/ack', { token: agent.token, body: { fencing_token: 1 } }))
          .status,
      ).toBe(404);
      expect(
        (await h.api('/api/runs/run_nope/heartbeat', { token: agent.token, raw: '{"fencing_token":' }))
          .status,
      ).toBe(400);
    });
  });
});
