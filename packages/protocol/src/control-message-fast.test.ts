import { describe, expect, it } from 'vitest';
import { offerClaimedOf, parseControlMessage } from './control-message-fast.js';
import { controlMessageSchema } from './runs.js';
import { mutations } from '../test/message-mutations.js';

/** A run claimed on offer, as the control plane's `toRun` + `claimAnswer` send it. */
function claim(over: Record<string, unknown> = {}, runOver: Record<string, unknown> = {}) {
  return {
    fencing_token: 7,
    expires_at: '2026-12-01T21:00:00.000Z',
    run: {
      id: 'run_1',
      status: 'accepted',
      runtime: 'fake',
      image: null,
      command: ['sleep', '0'],
      env: { A: '1', S: '***' },
      secret_env_names: ['S'],
      workdir: null,
      ready_when: null,
      placement: { workstation_id: 'ws_1', labels: { os: 'linux' } },
      resources: { cpus: 1, memory_bytes: 1024 },
      bundle: null,
      max_attempts: 3,
      timeout_s: null,
      queue_timeout_s: null,
      retry: null,
      not_before: null,
      attempt: 1,
      workstation_id: 'ws_1',
      lease: { holder: 'ws_1', fencing_token: 7, expires_at: '2026-12-01T21:00:00.000Z' },
      exit_code: null,
      failure_kind: null,
      failure_message: null,
      cancel_requested: false,
      created_at: '2026-12-01T20:59:00.000Z',
      offered_at: '2026-12-01T20:59:01.000Z',
      accepted_at: '2026-12-01T20:59:01.000Z',
      started_at: null,
      finished_at: null,
      ...runOver,
    },
    next_event_seq: 1,
    pending_commands: false,
    secret_env: { S: 'hunter2' },
    ...over,
  };
}

const message = (...runs: unknown[]) => ({ type: 'offer-claimed', runs });

/** Odd values put in place of every field in turn. */
const ODD: unknown[] = [
  undefined,
  null,
  0,
  -1,
  1.5,
  NaN,
  Infinity,
  '',
  'x',
  'completed',
  'timeout',
  true,
  false,
  [],
  ['x'],
  [1],
  {},
  { x: 1 },
  { log_line: 'x' },
  { sha256: 'x' },
  { holder: 'h', fencing_token: 1, expires_at: 'e' },
  { on: ['timeout'] },
  Object.create(null) as unknown,
  new Date(0),
];

describe('parseControlMessage', () => {
  const good = [
    message(claim()),
    message(claim(), claim({ fencing_token: 8, pending_commands: undefined, secret_env: undefined })),
    message(
      claim(
        { pending_commands: true },
        {
          ready_when: { log_line: 'ready' },
          bundle: { sha256: 'a'.repeat(64) },
          placement: {},
          resources: {},
          lease: null,
          timeout_s: 60,
          status: 'running',
          failure_kind: 'timeout',
          exit_code: -1,
        },
      ),
    ),
  ].map((m) => JSON.parse(JSON.stringify(m)) as unknown);

  it('takes a plain offer-claimed without the schema, equal to what the schema makes of it', () => {
    for (const m of good) {
      expect(offerClaimedOf(m)).toBe(m);
      expect(parseControlMessage(m)).toEqual({ success: true, data: controlMessageSchema.parse(m) });
    }
  });

  it('never takes what the schema refuses, and what it takes equals the schema’s output (each field of a run mutated)', () => {
    let fast = 0;
    let refused = 0;
    const all = good.flatMap((m) => [{ name: 'good', msg: m }, ...mutations(m, ODD)]);
    for (const { name, msg } of all) {
      const zod = controlMessageSchema.safeParse(msg);
      const taken = offerClaimedOf(msg);
      if (taken) {
        fast++;
        expect(zod.success, name).toBe(true);
        expect(taken, name).toEqual(zod.data);
      }
      if (!zod.success) refused++;
      const ours = parseControlMessage(msg);
      expect(ours.success, name).toBe(zod.success);
      if (ours.success && zod.success) expect(ours.data, name).toEqual(zod.data);
    }
    // both sides exercised: many mutations taken by the fast path, many refused by the schema
    expect(fast).toBeGreaterThan(50);
    expect(refused).toBeGreaterThan(500);
  });

  it('leaves what it does not know to the schema (retry policy defaults, attempts, symbol or inherited keys)', () => {
    const withRetry = message(claim({}, { retry: { on: ['timeout'] } }));
    expect(offerClaimedOf(withRetry)).toBeUndefined();
    const parsed = parseControlMessage(withRetry);
    expect(parsed.success && parsed.data.type === 'offer-claimed' && parsed.data.runs[0]!.run.retry).toEqual(
      controlMessageSchema.parse(withRetry).type === 'offer-claimed' &&
        (controlMessageSchema.parse(withRetry) as { runs: { run: { retry: unknown } }[] }).runs[0]!.run.retry,
    );
    expect(offerClaimedOf(message(claim({}, { attempts: [] })))).toBeUndefined();
    const sym = message(claim());
    (sym.runs[0] as { run: { env: Record<string | symbol, unknown> } }).run.env[Symbol('s')] = 1;
    expect(parseControlMessage(sym).success).toBe(controlMessageSchema.safeParse(sym).success);
    const symRun = message(claim());
    (symRun.runs[0] as { run: Record<string | symbol, unknown> }).run[Symbol('s')] = 1;
    expect(offerClaimedOf(symRun)).toBeUndefined();
    expect(parseControlMessage(symRun)).toEqual(controlMessageSchema.safeParse(symRun));
    const inherited = message(claim({}, { env: Object.create({ A: 1 }) as unknown }));
    expect(offerClaimedOf(inherited)).toBeUndefined();
    expect(parseControlMessage(inherited).success).toBe(controlMessageSchema.safeParse(inherited).success);
  });

  it('parses every other message with the schema', () => {
    for (const m of [
      { type: 'registered', workstation_id: 'ws_1' },
      { type: 'cancel', run_id: 'run_1' },
      { type: 'ping', id: '1' },
      { type: 'drain' },
      { type: 'cancel' },
      { type: 'nope' },
      message(),
      { type: 'offer-claimed', runs: Array.from({ length: 1001 }, () => claim()) },
    ]) {
      expect(offerClaimedOf(m)).toBeUndefined();
      const zod = controlMessageSchema.safeParse(m);
      const ours = parseControlMessage(m);
      expect(ours.success).toBe(zod.success);
      if (ours.success && zod.success) expect(ours.data).toEqual(zod.data);
    }
  });
});
