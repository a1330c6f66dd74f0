import { Writable } from 'node:stream';
import type { WebSocket } from 'ws';
import { describe, expect, it } from 'vitest';
import { sendText, type AgentLink } from '../src/link/link-registry.js';

/** A link over a stream that counts the writes reaching it (a `writev` of many frames is one). */
function countingLink(): { link: AgentLink; writes: string[][] } {
  const writes: string[][] = [];
  const raw = new Writable({
    decodeStrings: false,
    write(chunk: string, _enc, cb) {
      writes.push([chunk]);
      cb();
    },
    writev(chunks, cb) {
      writes.push(chunks.map((c) => c.chunk as string));
      cb();
    },
  });
  const socket = { send: (text: string) => raw.write(text) } as unknown as WebSocket;
  return {
    link: {
      socket,
      raw,
      workstationId: 'ws_1',
      credentialId: 'c',
      alive: true,
      registered: true,
      chain: Promise.resolve(),
    },
    writes,
  };
}

describe('sendText', () => {
  // The answers of two batches whose statements came back in the same iteration of the event
  // loop are sent from two I/O callbacks, each its own turn (`process.nextTick` runs between them).
  it('sends the frames of one event-loop iteration in one write, across turns', async () => {
    const { link, writes } = countingLink();
    sendText(link, 'a');
    await new Promise((r) => process.nextTick(r));
    sendText(link, 'b');
    expect(writes).toEqual([]); // held until the iteration ends
    await new Promise((r) => setImmediate(r));
    expect(writes).toEqual([['a', 'b']]);
    // The next iteration corks afresh.
    sendText(link, 'c');
    await new Promise((r) => setImmediate(r));
    expect(writes).toEqual([['a', 'b'], ['c']]);
  });
});
