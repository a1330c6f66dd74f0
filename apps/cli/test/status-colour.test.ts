import { describe, expect, it } from 'vitest';
import { colourStatus } from '../src/status-colour.js';

const tty = { isTTY: true };
const pipe = { isTTY: false };

describe('colourStatus', () => {
  it('colours on a terminal, by what the status means', () => {
    expect(colourStatus('completed', tty, {})).toBe('\u001b[32mcompleted\u001b[0m');
    expect(colourStatus('failed  ', tty, {})).toBe('\u001b[31mfailed  \u001b[0m');
    expect(colourStatus('online', tty, {})).toBe('\u001b[32monline\u001b[0m');
    expect(colourStatus('draining', tty, {})).toBe('\u001b[33mdraining\u001b[0m');
    expect(colourStatus('revoked', tty, {})).toBe('\u001b[31mrevoked\u001b[0m');
    expect(colourStatus('queued', tty, {})).toBe('queued');
  });
  // The rule itself (FORCE_COLOR, NO_COLOR, TERM) is tested where it lives, @runt/agent log-format.test.ts.
  it('is plain when piped, with NO_COLOR, with TERM=dumb, and with FORCE_COLOR=0', () => {
    expect(colourStatus('failed', pipe, {})).toBe('failed');
    expect(colourStatus('failed', tty, { NO_COLOR: '1' })).toBe('failed');
    expect(colourStatus('failed', tty, { TERM: 'dumb' })).toBe('failed');
    expect(colourStatus('failed', tty, { FORCE_COLOR: '0' })).toBe('failed');
    expect(colourStatus('failed', tty, { NO_COLOR: '' })).toBe('\u001b[31mfailed\u001b[0m');
  });
  it('FORCE_COLOR colours even when piped, and wins over NO_COLOR', () => {
    expect(colourStatus('failed', pipe, { FORCE_COLOR: '1' })).toBe('\u001b[31mfailed\u001b[0m');
    expect(colourStatus('failed', pipe, { FORCE_COLOR: '1', NO_COLOR: '1' })).toBe(
      '\u001b[31mfailed\u001b[0m',
    );
  });
});
