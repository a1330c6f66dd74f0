import { describe, expect, it, vi } from 'vitest';
import { ApiError, type RunEventInput } from '@runt/protocol';
import { RunEventLog, type RunEventLogOptions } from './run-event-log.js';

/** Records batches; fails the first `failures` calls with a network error. */
function recorder(failures = 0, reject?: ApiError) {
  const batches: RunEventInput[][] = [];
  let calls = 0;
  return {
    batches,
    client: {
      async appendEvents(_runId: string, body: { fencing_token: number; events: RunEventInput[] }) {
        calls++;
        batches.push(body.events);
        if (reject) throw reject;
        if (calls <= failures) throw new ApiError(0, 'unreachable', 'cannot reach');
        return { next_event_seq: body.events.at(-1)!.seq + 1 };
      },
    },
  };
}

/** A RunEventLog of run_1 (token 1, next seq 1) writing to `r`, with `over` on top. */
function eventLog(r: ReturnType<typeof recorder>, over: Partial<RunEventLogOptions> = {}): RunEventLog {
  return new RunEventLog({
    client: r.client,
    runId: 'run_1',
    fencingToken: 1,
    nextSeq: 1,
    signal: new AbortController().signal,
    onRejected: () => {},
    ...over,
  });
}

describe('RunEventLog', () => {
  it('numbers events gap-free from the claimed seq and batches them', async () => {
    const r = recorder();
    const flushed: number[] = [];
    const log = eventLog(r, {
      nextSeq: 5,
      onFlushed: (n) => flushed.push(n),
    });
    for (let i = 0; i < 7; i++) log.append('log', { stream: 'stdout', data: `${i}\n` });
    await log.flush();
    expect(r.batches.flat().map((e) => e.seq)).toEqual([5, 6, 7, 8, 9, 10, 11]);
    expect(r.batches).toHaveLength(1);
    expect(flushed.at(-1)).toBe(12);
    expect(log.nextSeq).toBe(12);
  });

  it('resends the same seqs after a failure, so nothing is lost or duplicated', async () => {
    const r = recorder(2);
    let chars = { stdout: 0, stderr: 0 };
    const log = eventLog(r, {
      onFlushed: (_n, c) => (chars = c),
    });
    log.append('log', { stream: 'stdout', data: 'abc' });
    log.append('log', { stream: 'stderr', data: 'de' });
    await log.flush();
    expect(r.batches).toHaveLength(3);
    for (const b of r.batches) expect(b.map((e) => e.seq)).toEqual([1, 2]);
    expect(chars).toEqual({ stdout: 3, stderr: 2 });
  });

  it('stops and reports a 409 instead of retrying', async () => {
    const r = recorder(0, new ApiError(409, 'run-not-active', 'run is no longer active'));
    const rejected: Error[] = [];
    const log = eventLog(r, {
      onRejected: (e) => rejected.push(e),
    });
    log.append('log', { stream: 'stdout', data: 'x' });
    await log.flush();
    log.append('log', { stream: 'stdout', data: 'y' });
    await log.flush();
    expect(r.batches).toHaveLength(1);
    expect(rejected.map((e) => e.message)).toEqual(['run is no longer active']);
    expect(log.rejected).toBe(true);
  });

  it('splits large bursts into batches of maxBatch', async () => {
    const r = recorder();
    const log = eventLog(r, {
      maxBatch: 10,
    });
    for (let i = 0; i < 25; i++) log.append('log', { stream: 'stdout', data: 'x' });
    await log.flush();
    expect(r.batches.every((b) => b.length <= 10)).toBe(true);
    expect(r.batches.flat().map((e) => e.seq)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
  });
  it('hands queued events to a status report: carried ones count as sent, the rest go out as usual', async () => {
    const r = recorder();
    let chars = { stdout: 0, stderr: 0 };
    const flushed: number[] = [];
    const log = eventLog(r, {
      lingerMs: 1,
      onFlushed: (n, c) => {
        flushed.push(n);
        chars = c;
      },
    });
    log.append('log', { stream: 'stdout', data: 'abc' });
    log.append('log', { stream: 'stderr', data: 'de' });
    const carried = await log.take();
    expect(carried.map((e) => e.seq)).toEqual([1, 2]);
    log.append('log', { stream: 'stdout', data: 'f' }); // held back while the report is out
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(r.batches).toHaveLength(0);
    log.settle(carried);
    expect(chars).toEqual({ stdout: 3, stderr: 2 });
    await log.flush();
    expect(r.batches.map((b) => b.map((e) => e.seq))).toEqual([[3]]);
    expect(flushed).toEqual([3, 4]);

    // A control plane that did not take them: they are sent separately, same seqs.
    log.append('log', { stream: 'stdout', data: 'g' });
    const notTaken = await log.take();
    log.settle(undefined);
    await log.flush();
    expect(r.batches.at(-1)!.map((e) => e.seq)).toEqual(notTaken.map((e) => e.seq));
    expect(chars).toEqual({ stdout: 5, stderr: 2 });
  });
});

describe('RunEventLog: sizes', () => {
  it('serialises no event to measure it while the queue is far below the byte budget', async () => {
    const r = recorder();
    const log = eventLog(r);
    const stringify = vi.spyOn(JSON, 'stringify');
    try {
      log.append('backend_status', { state: 'started', instance_id: 'fake-000001', runtime: 'fake' });
      log.appendOutput('stdout', 'hi\n');
      const carried = await log.take();
      log.settle(carried);
      expect(carried).toHaveLength(2);
      expect(stringify).not.toHaveBeenCalled();
    } finally {
      stringify.mockRestore();
    }
  });

  it('cuts batches where the exact sizes say, whatever the bound (escapes, pairs, numbers)', async () => {
    const chars = ['x', '\u0001', '😀', 'é', '"', '\n'];
    let seed = 7;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    const budget = 4_000;
    const r = recorder();
    const log = eventLog(r, { maxBatchBytes: budget, maxBatch: 1_000 });
    for (let i = 0; i < 300; i++) {
      const data = Array.from({ length: rnd(400) }, () => chars[rnd(chars.length)]).join('');
      if (i % 3 === 0)
        log.append('backend_status', { state: data, n: rnd(1e9) / 7, ok: i % 2 === 0, none: null });
      else log.append('log', { stream: 'stdout', data });
    }
    await log.flush();
    const size = (e: RunEventInput) => Buffer.byteLength(JSON.stringify(e)) + 1;
    const all = r.batches.flat();
    expect(all.map((e) => e.seq)).toEqual(Array.from({ length: all.length }, (_, i) => i + 1));
    for (const [i, b] of r.batches.entries()) {
      const bytes = b.reduce((s, e) => s + size(e), 0);
      expect(b.length === 1 || bytes <= budget).toBe(true);
      // greedy: the next batch's first event would not have fitted this one
      const next = r.batches[i + 1]?.[0];
      if (next) expect(bytes + size(next)).toBeGreaterThan(budget);
    }
  });

  it('a status report coming (holdForReport) keeps the linger timer unarmed; the report carries the events', async () => {
    const r = recorder();
    const log = eventLog(r, { lingerMs: 1 });
    log.holdForReport();
    log.append('backend_status', { state: 'started' });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(r.batches).toHaveLength(0);
    const carried = await log.take();
    expect(carried.map((e) => e.seq)).toEqual([1]);
    log.settle(undefined); // not taken: sent on the timer as usual
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(r.batches.map((b) => b.map((e) => e.seq))).toEqual([[1]]);
  });
});

describe('RunEventLog: secret values in the output', () => {
  it('masks a secret split across chunks of a stream, and sends what a stream held back at its end', async () => {
    const r = recorder();
    const log = eventLog(r, {
      secrets: ['hunter2'],
    });
    log.appendOutput('stdout', 'pw=hun');
    log.appendOutput('stderr', 'e:hunt');
    log.appendOutput('stdout', 'ter2 ok\n');
    log.appendOutput('stderr', 'er'); // a possible start of the secret: held back until the end
    log.endOutput();
    await log.flush();
    const text = (stream: string) =>
      r.batches
        .flat()
        .filter((e) => e.type === 'log' && e.payload.stream === stream)
        .map((e) => String(e.payload.data))
        .join('');
    expect(text('stdout')).not.toContain('hunter2');
    expect(text('stdout')).toMatch(/^pw=.+ ok\n$/);
    expect(text('stderr')).toBe('e:hunter');
  });

  it('a run without secrets sends its output as written, and its end adds nothing', async () => {
    const r = recorder();
    const log = eventLog(r, {
      secrets: [],
    });
    log.appendOutput('stdout', 'hunter2\n');
    log.endOutput();
    await log.flush();
    expect(r.batches.flat().map((e) => e.payload.data)).toEqual(['hunter2\n']);
  });
});
