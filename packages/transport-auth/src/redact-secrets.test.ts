import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { mintToken, type TokenKind } from './mint-token.js';
import { redactSecrets } from './redact-secrets.js';

const kind = fc.constantFrom<TokenKind>('admin', 'workstation');

describe('redactSecrets', () => {
  it('redacts tokens in strings, keeping the prefix', () => {
    const ws = mintToken('workstation');
    const adm = mintToken('admin');
    expect(redactSecrets(`token ${ws} and ${adm}.`)).toBe(
      'token rnt_ws_…[redacted] and rnt_adm_…[redacted].',
    );
    expect(redactSecrets(`x${ws}y`)).toBe('xrnt_ws_…[redacted]');
    expect(redactSecrets('Authorization: Bearer abc.def-ghi')).toBe('Authorization: Bearer [redacted]');
    expect(redactSecrets(`Bearer ${ws}`)).toBe('Bearer [redacted]');
    expect(redactSecrets('basic dXNlcjpwYXNz')).toBe('basic [redacted]');
    expect(redactSecrets('nothing to see; rnt_ws_ alone')).toBe('nothing to see; rnt_ws_ alone');
  });

  it('is idempotent', () => {
    const once = redactSecrets(`a ${mintToken('admin')} Bearer ${mintToken('workstation')}`);
    expect(redactSecrets(once)).toBe(once);
  });

  it('deep-copies objects, arrays, maps and sets, hiding sensitive keys', () => {
    const ws = mintToken('workstation');
    const input = {
      url: 'http://x',
      headers: { Authorization: `Bearer ${ws}`, 'x-api-key': 'k', Cookie: 'sid=1', accept: 'json' },
      token: ws,
      access_token: 42,
      password: null,
      list: [`see ${ws}`, { client_secret: 's' }],
      map: new Map<string, unknown>([
        ['token', ws],
        ['note', ws],
      ]),
      set: new Set([ws]),
      at: new Date(0),
      [ws]: 'a key that is a token',
    };
    const out = redactSecrets(input);
    expect(out).not.toBe(input);
    expect(out.headers).toEqual({
      Authorization: '[redacted]',
      'x-api-key': '[redacted]',
      Cookie: '[redacted]',
      accept: 'json',
    });
    expect(out.token).toBe('[redacted]');
    expect(out.access_token).toBe('[redacted]');
    expect(out.password).toBeNull();
    expect(out.list).toEqual(['see rnt_ws_…[redacted]', { client_secret: '[redacted]' }]);
    expect([...out.map]).toEqual([
      ['token', '[redacted]'],
      ['note', 'rnt_ws_…[redacted]'],
    ]);
    expect([...out.set]).toEqual(['rnt_ws_…[redacted]']);
    expect(out.at).toEqual(new Date(0));
    expect(Object.keys(out)).toContain('rnt_ws_…[redacted]');
    // The input is untouched.
    expect(input.token).toBe(ws);
    expect(input.headers.Authorization).toBe(`Bearer ${ws}`);
  });

  it('redacts error messages and stacks, keeping the prototype', () => {
    const ws = mintToken('workstation');
    const e = new TypeError(`bad token ${ws}`);
    const out = redactSecrets(e);
    expect(out).toBeInstanceOf(TypeError);
    expect(out.message).toBe('bad token rnt_ws_…[redacted]');
    expect(out.stack).not.toContain(ws);
    expect(e.message).toContain(ws);
  });

  it('survives cycles and keeps their shape', () => {
    const ws = mintToken('admin');
    const a: Record<string, unknown> = { note: ws };
    a.self = a;
    a.list = [a];
    const out = redactSecrets(a);
    expect(out.self).toBe(out);
    expect((out.list as unknown[])[0]).toBe(out);
    expect(out.note).toBe('rnt_adm_…[redacted]');
  });

  it('never leaves a minted token in JSON.stringify of random nested values embedding it', () => {
    fc.assert(
      fc.property(
        kind,
        fc.string(),
        fc.string(),
        fc.string(),
        fc.jsonValue({ maxDepth: 3 }),
        fc.array(fc.nat({ max: 8 }), { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        (k, before, after, key, shape, path, asKey) => {
          const token = mintToken(k);
          const embedded = `${before}${token}${after}`;
          // Hide the token somewhere inside a random JSON value: walk `path` and plant it there.
          const root: unknown = { wrapper: shape };
          let cursor = root as Record<string, unknown>;
          for (const step of path) {
            const next: Record<string, unknown> | unknown[] = step % 2 === 0 ? {} : [];
            if (Array.isArray(cursor)) (cursor as unknown[]).push(next);
            else cursor[`${key}${step}`] = next;
            cursor = next as Record<string, unknown>;
          }
          if (Array.isArray(cursor)) (cursor as unknown[]).push(embedded);
          else if (asKey) cursor[embedded] = 1;
          else cursor[key] = embedded;
          const text = JSON.stringify(redactSecrets(root));
          expect(text).not.toContain(token);
          expect(text).not.toContain(token.slice(token.indexOf('_', 4) + 1));
        },
      ),
      { numRuns: 500 },
    );
  });
});
