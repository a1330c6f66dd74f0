import type { AgentMessage, Run } from '@runt/protocol';
import { controlMessageSchema } from '@runt/protocol';
import { sampleRun } from '@runt/protocol/testing';
import { describe, expect, it } from 'vitest';
import { handleControlMessage, type ControlMessageHandlers } from '../src/control-messages.js';

const run: Run = sampleRun({ status: 'offered', workstation_id: null, created_at: 'x' });

function handlers(take: boolean) {
  const seen: string[] = [];
  const replies: AgentMessage[] = [];
  const h: ControlMessageHandlers = {
    registered: (id) => seen.push(`registered ${id}`),
    offer: async (r) => (seen.push(`offer ${r.id}`), take),
    claimed: async (c) => (seen.push(`claimed ${c.run.id} ${c.fencing_token}`), take || c.run.id === 'run_1'),
    cancel: (id) => seen.push(`cancel ${id}`),
    command: (id) => seen.push(`command ${id}`),
    drain: () => seen.push('drain'),
    reply: (m) => replies.push(m),
  };
  return { h, seen, replies };
}

describe('handleControlMessage', () => {
  it('answers an offer with the claim result once known, and a ping at once', async () => {
    for (const take of [true, false]) {
      const { h, seen, replies } = handlers(take);
      handleControlMessage({ type: 'offer', id: 'o1', run }, h);
      handleControlMessage({ type: 'ping', id: 'p1' }, h);
      expect(replies).toEqual([{ type: 'result', id: 'p1', ok: true }]);
      await new Promise((r) => setTimeout(r, 0));
      expect(seen).toEqual(['offer run_1']);
      expect(replies[1]).toEqual(
        take
          ? { type: 'result', id: 'o1', ok: true }
          : { type: 'result', id: 'o1', ok: false, error: 'not taken' },
      );
    }
  });

  it('takes runs claimed on offer without an answer, and hands back the ones not taken with their token', async () => {
    const { h, seen, replies } = handlers(false);
    const claim = (id: string, token: number) => ({
      fencing_token: token,
      expires_at: new Date().toISOString(),
      run: { ...run, id, status: 'accepted' as const },
      next_event_seq: 1,
      pending_commands: false,
    });
    handleControlMessage(
      controlMessageSchema.parse({ type: 'offer-claimed', runs: [claim('run_1', 4), claim('run_2', 7)] }),
      h,
    );
    await new Promise((r) => setTimeout(r, 0));
    expect(seen).toEqual(['claimed run_1 4', 'claimed run_2 7']);
    expect(replies).toEqual([
      { type: 'result', id: 'run_2', ok: false, error: 'not taken', fencing_token: 7 },
    ]);
  });

  it('routes registered, cancel, command and drain to their handlers', () => {
    const { h, seen, replies } = handlers(true);
    for (const m of [
      { type: 'registered', workstation_id: 'ws_9' },
      { type: 'registered', workstation_id: '' },
      { type: 'cancel', run_id: 'run_2' },
      { type: 'command', run_id: 'run_3' },
      { type: 'drain' },
    ]) {
      handleControlMessage(controlMessageSchema.parse(m), h);
    }
    expect(seen).toEqual(['registered ws_9', 'cancel run_2', 'command run_3', 'drain']);
    expect(replies).toEqual([]);
  });
});
