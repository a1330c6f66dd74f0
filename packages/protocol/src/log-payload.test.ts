import { describe, expect, it } from 'vitest';
import { LOG_EVENT_MAX_BYTES, logBytes, logPayloads } from './log-payload.js';

describe('logPayloads / logBytes', () => {
  it('keeps storable text as text', () => {
    expect(logPayloads('stdout', 'héllo\n')).toEqual([{ stream: 'stdout', data: 'héllo\n' }]);
    expect(logPayloads('stdout', 'ok', Buffer.from('ok'))).toEqual([{ stream: 'stdout', data: 'ok' }]);
  });

  it('sends a NUL, bytes that are not UTF-8 and a cut character as base64 of the exact bytes', () => {
    expect(logPayloads('stderr', 'a\0b')).toEqual([{ stream: 'stderr', data: 'YQBi', encoding: 'base64' }]);
    const bytes = Buffer.from([0xff, 0xfe, 0x41, 0xe2, 0x82]);
    const [p] = logPayloads('stdout', '\ufffd\ufffdA', bytes);
    expect(p).toMatchObject({ encoding: 'base64' });
    expect(logBytes(p!).equals(bytes)).toBe(true);
  });

  it('splits large binary output into pieces that join back', () => {
    const bytes = Buffer.alloc(LOG_EVENT_MAX_BYTES * 2 + 5, 0);
    const ps = logPayloads('stdout', '\0'.repeat(bytes.length), bytes);
    expect(ps).toHaveLength(3);
    expect(Buffer.concat(ps.map((x) => logBytes(x))).equals(bytes)).toBe(true);
  });
});
