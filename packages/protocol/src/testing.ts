import { runSchema, type Run } from './runs.js';

/**
 * A valid {@link Run} for tests, with `over` applied on top of neutral defaults (a fake-runtime
 * run, queued fields empty) and checked against the wire schema, so a test never carries its
 * own copy of every field and a new field needs no edit in every test.
 *
 * @example
 * import { sampleRun } from '@runt/protocol/testing';
 * const run = sampleRun({ status: 'offered', command: ['echo', 'hi'] });
 */
export function sampleRun(over: Partial<Run> = {}): Run {
  return runSchema.parse({
    id: 'run_1',
    status: 'accepted',
    runtime: 'fake',
    image: null,
    command: [],
    env: {},
    workdir: null,
    ready_when: null,
    placement: {},
    resources: {},
    bundle: null,
    max_attempts: 3,
    attempt: 1,
    workstation_id: 'ws_1',
    lease: null,
    exit_code: null,
    failure_kind: null,
    failure_message: null,
    cancel_requested: false,
    created_at: '2026-11-30T00:00:00.000Z',
    offered_at: null,
    accepted_at: null,
    started_at: null,
    finished_at: null,
    ...over,
  });
}

/**
 * Polls `check` until it returns something truthy and returns that; a check that throws counts
 * as "not yet" (its last error is in the timeout's message). A generous bound, never a timing
 * assertion: the tests of every package wait for the control plane, agents and engines with it.
 *
 * @example
 * const run = await eventually(async () => (await admin.getRun(id)).run.status === 'completed', 'run completed');
 */
export async function eventually<T>(
  check: () => T | Promise<T>,
  what = 'condition',
  timeoutMs = 15_000,
  intervalMs = 20,
): Promise<NonNullable<T>> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until)
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
