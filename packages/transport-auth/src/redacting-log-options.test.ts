import { describe, expect, it } from 'vitest';
import { mintToken } from './mint-token.js';
import { redactingLogOptions } from './redacting-log-options.js';

describe('redactingLogOptions', () => {
  const token = mintToken('workstation');
  const secret = token.slice('rnt_ws_'.length);

  it('masks tokens in the logged object', () => {
    const out = redactingLogOptions.formatters.log({
      headers: { authorization: `Bearer ${token}` },
      note: `got ${token}`,
    });
    expect(JSON.stringify(out)).not.toContain(secret);
    expect(out.note).toBe('got rnt_ws_…[redacted]');
  });

  it('masks tokens in every argument handed to the log method, keeping `this`', () => {
    const self = { name: 'logger' };
    let seen: { self: unknown; args: unknown[] } | undefined;
    redactingLogOptions.hooks.logMethod.call(
      self,
      [{ token }, `msg ${token}`, 42],
      function (this: unknown, ...args: unknown[]) {
        seen = { self: this, args };
      },
    );
    expect(seen?.self).toBe(self);
    expect(JSON.stringify(seen?.args)).not.toContain(secret);
    expect(seen?.args[2]).toBe(42);
  });
});
