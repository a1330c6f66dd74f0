import { describe, expect, it } from 'vitest';
import {
  PairingCodeRejectedError,
  PairingError,
  PairingRateLimitedError,
  isPairingError,
} from './pairing-error.js';

describe('pairing errors', () => {
  it('have stable names, codes and the contract message', () => {
    const rejected = new PairingCodeRejectedError();
    expect(rejected).toBeInstanceOf(PairingError);
    expect([rejected.name, rejected.code, rejected.message]).toEqual([
      'PairingCodeRejectedError',
      'pairing-code-rejected',
      'pairing code is invalid, expired, or already used',
    ]);
    const limited = new PairingRateLimitedError(12.2);
    expect([limited.name, limited.code, limited.retryAfterSeconds]).toEqual([
      'PairingRateLimitedError',
      'rate-limited',
      13,
    ]);
    expect(new PairingRateLimitedError(0).retryAfterSeconds).toBe(1);
    const base = new PairingError('unreachable', 'cannot reach x: y', { status: 502 });
    expect([base.name, base.code, base.status]).toEqual(['PairingError', 'unreachable', 502]);
  });

  it('are recognised by code without instanceof', () => {
    const foreign = Object.assign(new Error('x'), {
      [Symbol.for('runt.pairing.PairingError')]: true,
      code: 'rate-limited',
    });
    expect(isPairingError(foreign)).toBe(true);
    expect(isPairingError(foreign, 'rate-limited')).toBe(true);
    expect(isPairingError(foreign, 'pairing-code-rejected')).toBe(false);
    expect(isPairingError(new PairingCodeRejectedError(), 'pairing-code-rejected')).toBe(true);
    expect(isPairingError(Object.assign(new Error('x'), { code: 'rate-limited' }))).toBe(false);
    expect(isPairingError(null)).toBe(false);
  });
});
