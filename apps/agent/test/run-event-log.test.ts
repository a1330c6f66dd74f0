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

async function stdoutOf(runId: string): Promise<string> {
  let out = '';
  for (let after = 0; ;) {
    const page = await h.admin.listEvents(runId, { after_seq: after });
    if (page.events.length === 0) return out;
    for (const e of page.events) if (e.type === 'log') out += String(e.payload.data);
    after = page.next_after_seq;
  }
}

/** Output that JSON escapes to several times its length (control characters), around a pair that must not be cut. */
const big = (n: number) =>
  Array.from({ length: n }, (_, i) => (i % 7 === 0 ? '\u0001' : i % 11 === 0 ? '😀' : 'x')).join('');

describe('RunEventLog: output larger than the body limit (issue 8, defect 3)', () => {
  it('a 3 MB chunk is split into events and batches the control plane takes, and arrives whole', async () => {
    const claim = await h.claimRun({ runtime: 'unit-rt', command: ['x'] });
    const refused: string[] = [];
    const events = new RunEventLog({
      client: h.ws,
      runId: claim.run.id,
      fencingToken: claim.fencing_token,
      nextSeq: claim.next_event_seq,
      signal: AbortSignal.timeout(60_000),
      onRejected: (e) => refused.push(e.message),
    });
    const data = big(3_000_000);
    events.append('log', { stream: 'stdout', data });
    await events.flush();
    expect(refused).toEqual([]);
    expect(events.nextSeq).toBeGreaterThan(claim.next_event_seq + 40);
    expect((await stdoutOf(claim.run.id)) === data).toBe(true);
  }, 90_000);

  it('a terminal report with megabytes queued sends them first and records the real exit code', async () => {
    const claim = await h.claimRun({ runtime: 'unit-rt', command: ['x'] });
    const work = AbortSignal.timeout(60_000);
    const refused: string[] = [];
    const events = new RunEventLog({
      client: h.ws,
      runId: claim.run.id,
      fencingToken: claim.fencing_token,
      nextSeq: claim.next_event_seq,
      signal: work,
      onRejected: (e) => refused.push(e.message),
    });
    const reporter = new RunReporter({
      client: h.ws,
      runId: claim.run.id,
      fencingToken: claim.fencing_token,
      events,
      carryEvents: true,
      signal: work,
      onRefused: (r) => refused.push(r),
      logger: testLogger().logger,
    });
    expect(await reporter.report({ status: 'running' })).toBe(true);
    const lines = Array.from({ length: 200_000 }, (_, i) => `${i + 1}\n`).join('');
    events.append('log', { stream: 'stdout', data: lines });
    expect(
      await reporter.report({
        status: 'failed',
        exit_code: 7,
        failure_kind: 'nonzero-exit',
        failure_message: 'exited with code 7',
      }),
    ).toBe(true);
    expect(refused).toEqual([]);
    expect((await h.admin.getRun(claim.run.id)).run).toMatchObject({ status: 'failed', exit_code: 7 });
    expect((await stdoutOf(claim.run.id)) === lines).toBe(true);
  }, 90_000);
});

describe('RunEventLog: a gap in seqs (issue 7)', () => {
  it('resumes at the seq the control plane expects (409 event-seq-gap) instead of dropping the run', async () => {
    const claim = await h.claimRun({ runtime: 'unit-rt', command: ['x'] });
    const refused: string[] = [];
    // The log believes events up to seq next+4 were stored (say, a state file from a later
    // attempt of its own): the control plane expects `next_event_seq`.
    const events = new RunEventLog({
      client: h.ws,
      runId: claim.run.id,
      fencingToken: claim.fencing_token,
      nextSeq: claim.next_event_seq + 5,
      signal: AbortSignal.timeout(60_000),
      onRejected: (e) => refused.push(e.message),
    });
    events.append('log', { stream: 'stdout', data: 'one\n' });
    events.append('log', { stream: 'stdout', data: 'two\n' });
    await events.flush();
    expect(refused).toEqual([]);
    expect(events.nextSeq).toBe(claim.next_event_seq + 2);
    expect(await stdoutOf(claim.run.id)).toBe('one\ntwo\n');
    // And it goes on from there.
    events.append('log', { stream: 'stdout', data: 'three\n' });
    await events.flush();
    expect(await stdoutOf(claim.run.id)).toBe('one\ntwo\nthree\n');
  });
});
