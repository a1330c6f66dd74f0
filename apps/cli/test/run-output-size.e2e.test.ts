import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { allEvents, startRunsHarness, stdoutOf, terminal, type RunsHarness } from './runs-harness.js';

// Issue 8, defect 3: output of more than the control plane's body limit (1 MiB) at once used to
// be resent forever (413 retried) or end the run runner-lost with the output lost. A real agent
// on the process runtime now splits its event batches under the limit: the whole output and the
// real exit code arrive.

describe.each(TEST_BACKENDS)('output larger than the body limit on %s', (backend) => {
  let h: RunsHarness;

  beforeAll(async () => {
    h = await startRunsHarness(backend);
    await h.startAgent(`big-${backend}`, ['--runtime', 'process', '--max-runs', '2']);
  }, 120_000);
  afterAll(async () => h?.close());

  it('seq 1 200000 (1.3 MB of lines) arrives whole, in order, once', async () => {
    const { run } = await h.admin.submitRun({
      runtime: 'process',
      command: ['/bin/sh', '-c', 'seq 1 200000'],
    });
    expect(await terminal(h.admin, run.id, 180_000)).toMatchObject({ status: 'completed', exit_code: 0 });
    const want = Array.from({ length: 200_000 }, (_, i) => `${i + 1}\n`).join('');
    const got = await stdoutOf(h.admin, run.id);
    expect(got.length).toBe(want.length);
    expect(got === want).toBe(true);
    const events = await allEvents(h.admin, run.id);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, j) => j + 1));
  }, 240_000);

  it('5 MB in one line keeps every byte and the real exit code', async () => {
    const { run } = await h.admin.submitRun({
      runtime: 'process',
      command: ['/bin/sh', '-c', "head -c 5000000 /dev/zero | tr '\\0' a; exit 7"],
    });
    expect(await terminal(h.admin, run.id, 180_000)).toMatchObject({
      status: 'failed',
      exit_code: 7,
      failure_kind: 'nonzero-exit',
    });
    const got = await stdoutOf(h.admin, run.id);
    expect(got.length).toBe(5_000_000);
    expect(/^a*$/.test(got)).toBe(true);
  }, 240_000);
});
