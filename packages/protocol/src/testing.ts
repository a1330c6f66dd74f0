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
