import { describe, expect, it } from 'vitest';
import { handBackNote } from '../src/agent.js';

describe("the agent's log line of a hand-back's answer", () => {
  it('says what became of the run: queued again, cancelled, or nothing', () => {
    expect(handBackNote({ handed_back: true, status: 'queued' })).toBe('handed back');
    expect(handBackNote({ handed_back: true, status: 'cancelled' })).toBe('hand-back: the run was cancelled');
    expect(handBackNote({ handed_back: false })).toBe('hand-back did not apply');
    // a control plane before the status: as before
    expect(handBackNote({ handed_back: true })).toBe('handed back');
  });
});
