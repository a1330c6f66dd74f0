import { describe, expect, it } from 'vitest';
import { LeaseError } from './errors.js';
import { claimedLeaseFrom, plainClaimAnswer } from './held-lease.js';
import { claimAnswerSchema } from './wire-schemas.js';

const answer = {
  fencing_token: 3,
  expires_at: '2026-12-01T21:00:00.000Z',
  run: { id: 'run_1', env: { A: '1' } },
  next_event_seq: 1,
  pending_commands: false,
};

const ODD: unknown[] = [
  undefined,
  null,
  0,
  -1,
  1.5,
  2 ** 53,
  NaN,
  Infinity,
  '',
  '3',
  'x',
  '2026-12-01',
  '2026-12-01T21:00:00',
  '2026-12-01T21:00:00+02:00',
  '2026-02-30T21:00:00Z',
  true,
  [],
  {},
  new Date(0),
];

describe('claimedLeaseFrom', () => {
  it('takes a plain claim answer without the schema, equal to what the schema makes of it', () => {
    expect(plainClaimAnswer(answer)).toBe(answer);
    const lease = claimedLeaseFrom('run_1', answer, { runnerId: 'r', leaseMs: 30_000, claimedAt: 0 });
    expect(lease.answer).toEqual(claimAnswerSchema.parse(answer));
    expect(lease.fencingToken).toBe(3);
    expect(lease.expiresAt.toISOString()).toBe(answer.expires_at);
    expect(lease.run).toBe(answer.run);
  });

  it('never takes what the schema refuses; what it takes equals the schema’s output', () => {
    const cases: unknown[] = [answer, [], null, 'x', 1, Object.create(null), new Date(0)];
    for (const key of ['fencing_token', 'expires_at', 'run', 'extra']) {
      for (const v of ODD) cases.push({ ...answer, [key]: v });
      const { [key as keyof typeof answer]: _, ...without } = answer;
      cases.push(without);
    }
    cases.push({ ...answer, [Symbol('s')]: 1 });
    let fast = 0;
    for (const c of cases) {
      const zod = claimAnswerSchema.safeParse(c);
      const taken = plainClaimAnswer(c);
      if (taken) {
        fast++;
        expect(zod.success, JSON.stringify(c)).toBe(true);
        expect(taken).toEqual(zod.data);
      }
      const make = () => claimedLeaseFrom('run_1', c, { runnerId: 'r', leaseMs: 30_000, claimedAt: 0 });
      if (zod.success) expect(make().answer).toEqual(zod.data);
      else expect(make).toThrow(LeaseError);
    }
    expect(fast).toBeGreaterThan(10);
  });
});
