import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ControlPlaneClient } from '@runt/protocol';
import { createFakeRuntime } from '@runt/runtime-spi/fake';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunCommands } from '../src/run-commands.js';
import { RunEventLog } from '../src/run-event-log.js';
import { RunReporter } from '../src/run-reporter.js';
import { eventually, startTestControlPlane, testLogger, type TestControlPlane } from './control-plane.js';

let h: TestControlPlane;
beforeAll(async () => {
  h = await startTestControlPlane();
});
afterAll(async () => {
  await h?.close();
});

describe('RunCommands against a real control plane and the fake runtime', () => {
  it('runs a queued command when woken, streams its output and reports its end; persists the seq', async () => {
    const claim = await h.claimRun({ runtime: 'fake', command: ['/bin/sh', '-c', 'sleep infinity'] });
    const runId = claim.run.id;
    const runtime = createFakeRuntime();
    const inst = await runtime.create({
      name: 'cmd',
      command: ['/bin/sh', '-c', 'sleep infinity'],
      sourcePath: '/tmp',
    });
    await runtime.start(inst.id);
    const work = new AbortController();
    const cancel = new AbortController();
    const { logger } = testLogger();
    const refused: string[] = [];
    const events = new RunEventLog({
      client: h.ws,
      runId,
      fencingToken: claim.fencing_token,
      nextSeq: claim.next_event_seq,
      signal: work.signal,
      onRejected: (e) => refused.push(e.message),
    });
    const reporter = new RunReporter({
      client: h.ws,
      runId,
      fencingToken: claim.fencing_token,
      events,
      carryEvents: true,
      signal: work.signal,
      onRefused: (r) => refused.push(r),
      logger,
    });
    const seqs: number[] = [];
    const commands = new RunCommands({
      client: h.ws,
      reporter,
      runtime,
      runId,
      instanceId: inst.id,
      fencingToken: claim.fencing_token,
      events,
      afterSeq: 0,
      onSeq: (seq) => void seqs.push(seq),
      work: work.signal,
      cancel: cancel.signal,
      pollMs: () => 60_000, // only a wake-up can make it look again within the test
      skipFirst: true,
      onRefused: (r) => refused.push(r),
      logger,
    });
    const loop = commands.run();
    const { command: ok } = await h.admin.queueCommand(runId, {
      type: 'exec',
      command: ['/bin/sh', '-c', 'echo from-exec'],
    });
    const { command: bad } = await h.admin.queueCommand(runId, {
      type: 'exec',
      command: ['/bin/sh', '-c', 'echo oops; exit 4'],
    });
    commands.wake();
    const events_ = await eventually(async () => {
      const all = (await h.admin.listEvents(runId)).events;
      return all.filter((e) => e.type === 'command_status' && e.payload.state !== 'acked').length === 2
        ? all
        : undefined;
    }, 'both commands to finish');
    expect(
      events_
        .filter((e) => e.type === 'log' && e.payload.command_id === ok.id)
        .map((e) => e.payload.data)
        .join(''),
    ).toBe('from-exec\n');
    expect(
      events_.find(
        (e) => e.type === 'command_status' && e.payload.command_id === bad.id && e.payload.state === 'failed',
      )?.payload,
    ).toMatchObject({ exit_code: 4 });
    const listed = (await h.ws.listCommands(runId)).commands;
    expect(listed.map((c) => [c.id, c.state, c.exit_code])).toEqual([
      [ok.id, 'completed', 0],
      [bad.id, 'failed', 4],
    ]);
    expect(seqs).toEqual([ok.seq, bad.seq]);
    commands.stop();
    await loop;
    expect(refused).toEqual([]);
    work.abort();
    await runtime.close();
  });

  it('ends and drops the run when listing is refused (409: the lease is not ours)', async () => {
    // This control plane never refuses a listing; a control plane that fences it answers 409.
    const server = createServer((_req, res) => {
      res
        .writeHead(409, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: { code: 'runner-lease-conflict', message: 'not yours' } }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = new ControlPlaneClient({
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      token: 'rnt_ws_x',
      nodeHttp: true,
    });
    const claim = { run: { id: 'run_fenced' }, fencing_token: 1 };
    const work = new AbortController();
    const { logger } = testLogger();
    const refused: string[] = [];
    const events = new RunEventLog({
      client,
      runId: claim.run.id,
      fencingToken: claim.fencing_token,
      nextSeq: 1,
      signal: work.signal,
      onRejected: () => undefined,
    });
    const commands = new RunCommands({
      client,
      reporter: new RunReporter({
        client,
        runId: claim.run.id,
        fencingToken: claim.fencing_token,
        events,
        carryEvents: true,
        signal: work.signal,
        onRefused: () => undefined,
        logger,
      }),
      runtime: createFakeRuntime(),
      runId: claim.run.id,
      instanceId: 'none',
      fencingToken: claim.fencing_token,
      events,
      afterSeq: 0,
      onSeq: () => undefined,
      work: work.signal,
      cancel: new AbortController().signal,
      pollMs: () => 60_000,
      skipFirst: false,
      onRefused: (r) => refused.push(r),
      logger,
    });
    await commands.run();
    expect(refused).toEqual(['commands refused: not yours']);
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
});
