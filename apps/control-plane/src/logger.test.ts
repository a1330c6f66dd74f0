import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { mintToken } from '@runt/transport-auth';
import { createLogger } from './logger.js';

describe('createLogger', () => {
  it('writes JSON lines with tokens masked in objects and messages', () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) });
    const token = mintToken('workstation');
    const log = createLogger('info', sink);
    log.info(
      { headers: { authorization: `Bearer ${token}` }, note: `seen ${token}` },
      `message with ${token}`,
    );
    log.flush();
    const text = lines.join('');
    expect(text).not.toContain(token.slice('rnt_ws_'.length));
    const entry = JSON.parse(text.trim());
    expect(entry).toMatchObject({
      service: 'runt-control-plane',
      level: 30,
      note: 'seen rnt_ws_…[redacted]',
      msg: 'message with rnt_ws_…[redacted]',
    });
  });
});
