import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { ControlPlaneClient } from '@runt/protocol';
import { knownRuntimes, runCountsByStatus } from '../src/panel/panel-reads.js';
import { countText } from '../src/panel/pages/runs-page.js';
import { startHarness, type Harness } from './harness.js';
import { uniqueRuntime } from './agent-double.js';

// The runs page's reads are bounded (issue 11): counts stop at a cap, runtimes are a skip scan.
describe.each(TEST_BACKENDS)('panel reads on %s', (backend) => {
  let h: Harness;
  let admin: ControlPlaneClient;
  beforeAll(async () => {
    h = await startHarness(backend);
    admin = new ControlPlaneClient({ url: h.cp.url, token: h.adminToken, retries: 0 });
  });
  afterAll(async () => h?.close());

  it('counts runs per status up to the cap, then says more', async () => {
    const runtime = uniqueRuntime();
    for (let i = 0; i < 5; i++) await admin.submitRun({ runtime, command: ['x'] });
    expect((await runCountsByStatus(h.t.db, { runtime })).get('queued')).toBe(5);
    const capped = await runCountsByStatus(h.t.db, { runtime }, 3);
    expect(capped.get('queued')).toBe(4);
    expect(capped.get('running')).toBeUndefined();
    expect(countText(5)).toBe('5');
    expect(countText(1001)).toBe('1000+');
  });

  it('lists each runtime runs were submitted with once, sorted', async () => {
    const a = `a-${uniqueRuntime()}`;
    const b = `b-${uniqueRuntime()}`;
    for (const runtime of [b, a, b]) await admin.submitRun({ runtime, command: ['x'] });
    const got = await knownRuntimes(h.t.db);
    expect(got.filter((r) => r === a || r === b)).toEqual([a, b]);
    expect(got).toEqual([...new Set(got)].sort());
  });
});
