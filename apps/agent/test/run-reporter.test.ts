import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunEventLog } from '../src/run-event-log.js';
import { RunReporter } from '../src/run-reporter.js';
import { startTestControlPlane, testLogger, type TestControlPlane } from './control-plane.js';

let h: TestControlPlane;
beforeAll(async () => {
  h = await startTestControlPlane();
});
afterAll(async () => {
  await h?.close();
});

function reporterFor(
  runId: string,
  fencingToken: number,
  nextSeq: number,
  carryEvents: boolean,
  secrets?: string[],
) {
  const work = new AbortController();
  const refused: string[] = [];
  const events = new RunEventLog({
    client: h.ws,
    runId,
    fencingToken,
    nextSeq,
    signal: work.signal,
    onRejected: (e) => refused.push(e.message),
  });
  const reporter = new RunReporter({
    client: h.ws,
    runId,
    fencingToken,
    events,
    carryEvents,
    signal: work.signal,
    onRefused: (r) => refused.push(r),
    logger: testLogger().logger,
    ...(secrets ? { secrets } : {}),
  });
  return { events, reporter, refused, work };
}

describe('RunReporter against a real control plane', () => {
  for (const carryEvents of [true, false]) {
    it(`reports running and the terminal status with the queued events (${carryEvents ? 'carried on the report' : 'flushed first'})`, async () => {
      const claim = await h.claimRun({ runtime: 'unit-rt', command: ['x'] });
      const { events, reporter, refused } = reporterFor(
        claim.run.id,
        claim.fencing_token,
        claim.next_event_seq,
        carryEvents,
      );
      events.append('log', { stream: 'stdout', data: 'hello\n' });
      expect(await reporter.report({ status: 'running' })).toBe(true);
      expect((await h.admin.getRun(claim.run.id)).run.status).toBe('running');
      events.append('log', { stream: 'stdout', data: 'bye\n' });
      expect(
        await reporter.report({
          status: 'failed',
          exit_code: 3,
          failure_kind: 'nonzero-exit',
          failure_message: 'exited with code 3',
        }),
      ).toBe(true);
      const { run } = await h.admin.getRun(claim.run.id);
      expect(run).toMatchObject({ status: 'failed', exit_code: 3, failure_kind: 'nonzero-exit' });
      const listed = await h.admin.listEvents(claim.run.id);
      expect(listed.events.filter((e) => e.type === 'log').map((e) => e.payload.data)).toEqual([
        'hello\n',
        'bye\n',
      ]);
      expect(listed.events.at(-1)?.type).toBe('terminal_status');
      expect(refused).toEqual([]);
    });
  }

  it("masks the run's secret values in the failure message, as in its output", async () => {
    const claim = await h.claimRun({ runtime: 'unit-rt', command: ['x'] });
    const secret = 'tok-9f2c41d7e0';
    const { reporter } = reporterFor(claim.run.id, claim.fencing_token, claim.next_event_seq, true, [secret]);
    expect(
      await reporter.report({
        status: 'failed',
        failure_kind: 'start-failed',
        failure_message: `cannot start: deploy --token ${secret} not found`,
      }),
    ).toBe(true);
    const { run } = await h.admin.getRun(claim.run.id);
    expect(run.failure_message).toBe('cannot start: deploy --token *** not found');
    expect(JSON.stringify(await h.admin.listEvents(claim.run.id))).not.toContain(secret);
  });

  it('drops the run (onRefused) when the control plane refuses a stale fencing token, without retrying', async () => {
    const claim = await h.claimRun({ runtime: 'unit-rt', command: ['x'] });
    const { reporter, refused } = reporterFor(
      claim.run.id,
      claim.fencing_token + 7,
      claim.next_event_seq,
      true,
    );
    expect(await reporter.report({ status: 'running' })).toBe(false);
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatch(/^409 /);
    expect((await h.admin.getRun(claim.run.id)).run.status).toBe('accepted');
  });

  it('retries a call through transient failures until it is answered, and gives up once the run signal aborts', async () => {
    const { reporter, work } = reporterFor('run_none', 1, 1, true);
    let calls = 0;
    const answer = await reporter.retry(async () => {
      if (++calls < 3) throw new Error('ECONNRESET');
      return 'ok';
    });
    expect(answer).toBe('ok');
    expect(calls).toBe(3);
    setTimeout(() => work.abort(), 50);
    expect(await reporter.retry(() => Promise.reject(new Error('down')))).toBeUndefined();
  });
});
