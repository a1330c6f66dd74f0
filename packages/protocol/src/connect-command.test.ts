import { describe, expect, it } from 'vitest';
import { CLI_PACKAGE, connectCommand } from './connect-command.js';

describe('connectCommand', () => {
  it('names the scoped CLI package, never the unscoped `runt` that belongs to someone else', () => {
    expect(CLI_PACKAGE).toBe('@runt/cli');
    expect(connectCommand('http://127.0.0.1:8787', 'ABCD-EFGH-JKMN')).toBe(
      'npx @runt/cli workstation connect http://127.0.0.1:8787 --code ABCD-EFGH-JKMN',
    );
  });
});
