import { createServer, connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { corkForIteration, corkForTurn } from './cork-turn.js';

/** A stream that writes synchronously and records each call: one entry per `write`/`writev` it was handed. */
function recorder(): { stream: Writable; calls: string[][] } {
  const calls: string[][] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      calls.push([chunk.toString()]);
      cb();
    },
    writev(chunks, cb) {
      calls.push(chunks.map((c) => (c.chunk as Buffer).toString()));
      cb();
    },
  });
  return { stream, calls };
}

const turn = () => new Promise<void>((r) => setImmediate(r));

describe('corkForTurn', () => {
  it('sends the writes of one turn as one writev, in order', async () => {
    const { stream, calls } = recorder();
    corkForTurn(stream);
    stream.write('a');
    corkForTurn(stream); // a second call in the same turn shares the cork
    stream.write('b');
    await Promise.resolve(); // writes made from promise callbacks of the same turn too
    stream.write('c');
    expect(calls).toEqual([]);
    await turn();
    expect(calls).toEqual([['a', 'b', 'c']]);
    expect(stream.writableCorked).toBe(0);
  });

  it('holds nothing past its turn: the next turn corks afresh', async () => {
    const { stream, calls } = recorder();
    corkForTurn(stream);
    stream.write('a');
    await turn();
    stream.write('b'); // not corked: written at once
    expect(calls).toEqual([['a'], ['b']]);
    corkForTurn(stream);
    stream.write('c');
    stream.write('d');
    await turn();
    expect(calls).toEqual([['a'], ['b'], ['c', 'd']]);
  });

  it('without it, each write is its own call (what the cork saves)', () => {
    const { stream, calls } = recorder();
    stream.write('a');
    stream.write('b');
    expect(calls).toEqual([['a'], ['b']]);
  });

  it('delivers every byte over a real TCP socket', async () => {
    const got: Buffer[] = [];
    let onData = () => {};
    const server = createServer((s) =>
      s.on('data', (d) => {
        got.push(d);
        onData();
      }),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as { port: number };
    const client: Socket = connect(port, '127.0.0.1');
    await new Promise<void>((r) => client.once('connect', r));
    const text = Array.from({ length: 50 }, (_, i) => `frame-${i};`);
    const all = new Promise<void>((r) => {
      onData = () => Buffer.concat(got).length === text.join('').length && r();
    });
    corkForTurn(client);
    for (const t of text) client.write(t);
    await all;
    expect(Buffer.concat(got).toString()).toBe(text.join(''));
    client.destroy();
    await new Promise((r) => server.close(r));
  });
});

describe('corkForIteration', () => {
  // On the control plane the answers of two batches whose statements came back in the same
  // iteration are sent from two I/O callbacks, each its own turn (`process.nextTick` between them).
  it('sends the writes of one event-loop iteration as one writev, across turns, on every stream corked in it', async () => {
    const a = recorder();
    const b = recorder();
    corkForIteration(a.stream);
    a.stream.write('1');
    await new Promise((r) => process.nextTick(r)); // a turn ends; the iteration does not
    corkForIteration(a.stream); // shares the cork
    a.stream.write('2');
    corkForIteration(b.stream);
    b.stream.write('x');
    expect([a.calls, b.calls]).toEqual([[], []]);
    await turn();
    expect(a.calls).toEqual([['1', '2']]);
    expect(b.calls).toEqual([['x']]);
    expect([a.stream.writableCorked, b.stream.writableCorked]).toEqual([0, 0]);
    // The next iteration corks afresh.
    corkForIteration(a.stream);
    a.stream.write('3');
    await turn();
    expect(a.calls).toEqual([['1', '2'], ['3']]);
  });
});
