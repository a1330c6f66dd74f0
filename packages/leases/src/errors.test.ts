import { describe, expect, it } from 'vitest';
import { isLeaseError, LeaseConflictError, LeaseError, LeaseLostError, LeaseRequestError } from './errors.js';

describe('lease errors', () => {
  it('carry stable names and codes, and the guard does not need instanceof', () => {
    const conflict = new LeaseConflictError('run_1', 'stale-token', 'stale');
    const lost = new LeaseLostError('run_1', 3, 'refused', 'lost', { cause: conflict });
    const req = new LeaseRequestError('nope', { status: 503, retryAfterMs: 1000 });
    expect([conflict.name, conflict.code, conflict.status]).toEqual([
      'LeaseConflictError',
      'runner-lease-conflict',
      409,
    ]);
    expect([lost.name, lost.code, lost.cause]).toEqual(['LeaseLostError', 'lease-lost', conflict]);
    expect([req.name, req.code, req.status]).toEqual(['LeaseRequestError', 'lease-request-failed', 503]);
    expect(new LeaseError('lease-invalid-argument', 'x').name).toBe('LeaseError');
    for (const e of [conflict, lost, req]) expect(isLeaseError(e)).toBe(true);
    expect(isLeaseError(conflict, 'runner-lease-conflict')).toBe(true);
    expect(isLeaseError(conflict, 'lease-lost')).toBe(false);
    // A copy from another installation of the package: same marker, different class.
    const foreign = Object.assign(new Error('x'), {
      code: 'lease-lost',
      [Symbol.for('runt.leases.LeaseError')]: true,
    });
    expect(isLeaseError(foreign, 'lease-lost')).toBe(true);
    expect(isLeaseError(new Error('x'))).toBe(false);
    expect(isLeaseError(null)).toBe(false);
  });
});
