import { describe, expect, it } from 'vitest';
import { AuthError, isAuthError } from './auth-error.js';

describe('AuthError', () => {
  it('has a stable name, code and status', () => {
    const e = new AuthError('forbidden', 'no');
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('AuthError');
    expect([e.code, e.status]).toEqual(['forbidden', 403]);
    expect(new AuthError('unauthorized', 'x').status).toBe(401);
    expect(new AuthError('malformed-token', 'x').status).toBe(401);
  });

  it('is recognised without instanceof (a copy from another package instance)', () => {
    const foreign = Object.assign(new Error('x'), {
      [Symbol.for('runt.transport-auth.AuthError')]: true,
      code: 'unauthorized',
    });
    expect(isAuthError(foreign)).toBe(true);
    expect(isAuthError(new AuthError('unauthorized', 'x'))).toBe(true);
    expect(isAuthError(Object.assign(new Error('x'), { code: 'unauthorized', status: 401 }))).toBe(false);
    expect(isAuthError(undefined)).toBe(false);
    expect(isAuthError('AuthError')).toBe(false);
  });
});
