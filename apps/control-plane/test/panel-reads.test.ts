import { workstationsTable } from '../src/panel/pages/workstations-page.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { ControlPlaneClient } from '@runt/protocol';
import { countStatements } from '@runt/sql';
import { fleetWithRunsInUse, knownRuntimes, runCountsByStatus } from '../src/panel/panel-reads.js';
import { countText } from '../src/panel/pages/runs-page.js';
import { PendingReasons } from '../src/runs/pending-reason.js';
import { RunStore } from '../src/runs/run-store.js';
import { startHarness, type Harness } from './harness.js';
import { eventually, pairAgent, uniqueRuntime } from './agent-double.js';

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

  it('lists a page of runs with only what the list shows, at most one row past the page, then the next by cursor', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'summaries', [runtime]);
    await agent.connect({ max_runs: 1 });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++)
      ids.push((await admin.submitRun({ runtime, command: ['x', String(i)] })).run.id);
    await eventually(
      async () => ((await admin.getRun(ids[0]!)).run.status === 'offered' ? true : undefined),
      'the first run to be offered',
    );
    let rows = 0;
    const counted = countStatements(h.t.db, () => {});
    const seen: unknown[] = [];
    const runs = new RunStore({
      ...counted,
      query: async (text: string, params?: unknown[]) => {
        const r = await counted.query(text, params);
        rows += r.rows.length;
        seen.push(text);
        return r;
      },
    } as typeof counted);
    const first = await runs.listSummaries({ runtime, limit: 2 });
    expect(seen).toHaveLength(1);
    expect(rows).toBe(3); // the page and one more, to know there is a next page
    expect(first.runs.map((r) => r.id)).toEqual([ids[2], ids[1]]);
    expect(first.runs[0]).toEqual({
      id: ids[2],
      status: 'queued',
      runtime,
      image: null,
      command: ['x', '2'],
      workstation_id: null,
      workstation_name: null,
      created_at: expect.any(String),
      started_at: null,
      finished_at: null,
    });
    expect(first.next_cursor).not.toBeNull();
    const second = await runs.listSummaries({ runtime, limit: 2, cursor: first.next_cursor! });
    expect(second.runs.map((r) => [r.id, r.status, r.workstation_id, r.workstation_name])).toEqual([
      [ids[0], 'offered', agent.workstationId, 'summaries'],
    ]);
    expect(second.next_cursor).toBeNull();
    // The same runs, in the same order and pages, as the API's list.
    const api = await runs.list({ runtime, limit: 2 });
    expect(api.runs.map((r) => r.id)).toEqual(first.runs.map((r) => r.id));
    expect(api.next_cursor).toBe(first.next_cursor);
  });

  it('reads the fleet with the runs each holds in one statement, revoked ones included', async () => {
    const runtime = uniqueRuntime();
    const busy = await pairAgent(h, 'fleet-busy', [runtime]);
    await busy.connect({ max_runs: 2, prefetch: 1 });
    const revoked = await pairAgent(h, 'fleet-revoked', [runtime]);
    await revoked.registerHttp();
    await admin.revokeCredential(revoked.credentialId);
    for (let i = 0; i < 4; i++) await admin.submitRun({ runtime, command: ['x'] });
    await eventually(async () => {
      const fleet = await fleetWithRunsInUse(h.t.db);
      return fleet.find((f) => f.id === busy.workstationId)?.in_use === 3 ? true : undefined;
    }, 'its two slots and the run ahead of them offered to the busy workstation');
    let statements = 0;
    const fleet = await fleetWithRunsInUse(countStatements(h.t.db, (c) => (statements += c.statements)));
    expect(statements).toBe(1);
    const byId = new Map(fleet.map((f) => [f.id, f]));
    expect(byId.get(busy.workstationId)).toMatchObject({
      in_use: 3,
      max_runs: 2,
      prefetch: 1,
      status: 'online',
      runtimes: [runtime],
    });
    const table = String(await workstationsTable(fleet));
    expect(table).toMatch(/3 \/ 2<\/a> <span class="hint"[^>]*>\+ 1 ahead<\/span>/);
    expect(byId.get(revoked.workstationId)).toMatchObject({ in_use: 0, status: 'revoked' });
    // Oldest first, as the store lists them, and the same workstations.
    expect(fleet.map((f) => [f.id, f.status])).toEqual(
      (await h.cp.workstations.list()).map((w) => [w.id, w.status]),
    );
  });

  it("reads only the workstations offering a queued run's runtime for its why-queued", async () => {
    const runtime = uniqueRuntime();
    const other = uniqueRuntime();
    const offering = await pairAgent(h, 'why-offering', [runtime]);
    await offering.registerHttp({ listening: false });
    await (await pairAgent(h, 'why-other', [other])).registerHttp();
    const { run } = await admin.submitRun({ runtime, command: ['x'] });
    const { run: nowhere } = await admin.submitRun({ runtime: uniqueRuntime(), command: ['x'] });
    const store = h.cp.workstations;
    const asked: Array<readonly string[] | undefined> = [];
    const pending = new PendingReasons(h.t.db, {
      list: async (opts = {}) => {
        asked.push(opts.runtimes);
        return store.list(opts);
      },
      runtimesOffered: () => store.runtimesOffered(),
    });
    const [got] = await pending.annotate([(await admin.getRun(run.id)).run]);
    expect(asked).toEqual([[runtime]]);
    expect(got!.pending_reason).toEqual({
      code: 'offline',
      message: 'the matching workstation is offline or draining',
    });
    // A runtime no workstation offers names what the whole (live) fleet offers.
    const [none] = await pending.annotate([(await admin.getRun(nowhere.id)).run]);
    expect(none!.pending_reason?.code).toBe('no-runtime');
    expect(none!.pending_reason?.message).toContain(runtime);
    expect(none!.pending_reason?.message).toContain(other);
    expect(none!.pending_reason?.message).toContain(
      `(the fleet offers ${(await store.runtimesOffered()).join(', ')})`,
    );
  });
});
