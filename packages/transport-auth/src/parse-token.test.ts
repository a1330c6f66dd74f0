import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { mintToken } from './mint-token.js';
import { parseToken } from './parse-token.js';

describe('parseToken', () => {
  it('accepts exactly the minted format', () => {
    const ws = mintToken('workstation');
    expect(parseToken(ws)?.kind).toBe('workstation');
    expect(parseToken(mintToken('admin'))?.kind).toBe('admin');
    for (const bad of [
      '',
      'rnt_ws_',
      'rnt_ws_short',
      ws + 'A',
      ws.slice(0, -1),
      ` ${ws}`,
      `${ws}\n`,
      ws.replace('rnt_ws_', 'rnt_wx_'),
      ws.replace('rnt_ws_', 'RNT_WS_'),
      'rnt_adm_' + '!'.repeat(43),
      'rnt_ws_' + 'A'.repeat(42) + 'B', // not a canonical encoding of 32 bytes
    ]) {
      expect(parseToken(bad), JSON.stringify(bad)).toBeUndefined();
    }
  });

  it('is undefined for arbitrary strings and never throws', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (s) => {
        expect(parseToken(s)).toBeUndefined();
      }),
    );
  });

  it('accepts any canonical 32-byte secret behind a known prefix', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.constantFrom('rnt_adm_', 'rnt_ws_'),
        (bytes, prefix) => {
          const secret = Buffer.from(bytes).toString('base64url');
          expect(parseToken(prefix + secret)).toEqual({
            kind: prefix === 'rnt_adm_' ? 'admin' : 'workstation',
            secret,
          });
        },
      ),
    );
  });
});
