import { describe, expect, it } from 'vitest';
import { RUN_ERROR_CODES, isRunErrorCode } from './error-codes.js';

describe('run error codes', () => {
  it('narrows the codes the run path answers and nothing else', () => {
    for (const code of RUN_ERROR_CODES) expect(isRunErrorCode(code)).toBe(true);
    expect(isRunErrorCode('unauthorized')).toBe(false);
    expect(isRunErrorCode('run-not-active ')).toBe(false);
    expect(isRunErrorCode(409)).toBe(false);
  });

  it('keeps the codes agents already branch on', () => {
    expect(RUN_ERROR_CODES).toEqual(
      expect.arrayContaining([
        'run-not-active',
        'runner-lease-conflict',
        'event-seq-gap',
        'command-not-active',
      ]),
    );
  });
});
