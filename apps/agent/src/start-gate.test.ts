import { describe, expect, it } from 'vitest';
import { StartGate } from './start-gate.js';

describe('StartGate', () => {
  it('holds at most its permits; the rest wait and are granted in order as permits come back', async () => {
    const gate = new StartGate(1);
    const a = gate.acquire();
    const b = gate.acquire();
    const c = gate.acquire();
    expect([a.state, b.state, c.state]).toEqual(['held', 'waiting', 'waiting']);
    expect(a.granted).toBeUndefined(); // no promise for a permit held at once
    const order: string[] = [];
    void b.granted!.then((ok) => order.push(`b:${ok}`));
    void c.granted!.then((ok) => order.push(`c:${ok}`));
    gate.release(a);
    gate.release(a); // once only
    await Promise.resolve();
    expect(order).toEqual(['b:true']);
    expect(gate.held).toBe(1);
    gate.release(b);
    await Promise.resolve();
    expect(order).toEqual(['b:true', 'c:true']);
    gate.release(c);
    expect(gate.held).toBe(0);
  });

  it('a waiting permit released leaves the line (false) and takes nothing; a later one is not passed over', async () => {
    const gate = new StartGate(1);
    const a = gate.acquire();
    const b = gate.acquire();
    const c = gate.acquire();
    gate.release(b);
    expect(await b.granted).toBe(false);
    gate.release(a);
    expect(await c.granted).toBe(true);
    expect(gate.held).toBe(1);
    expect(gate.waiting).toBe(0);
  });

  it('force holds past the limit (a re-adopted run); new permits wait until the count is back below it', () => {
    const gate = new StartGate(1);
    const adopted = [gate.force(), gate.force()];
    expect(gate.held).toBe(2);
    const next = gate.acquire();
    expect(next.state).toBe('waiting');
    gate.release(adopted[0]!);
    expect(next.state).toBe('waiting'); // still 1 held of 1
    gate.release(adopted[1]!);
    expect(next.state).toBe('held');
  });

  it('close refuses the waiting permits and every later one that would wait; a free permit is still held', async () => {
    const gate = new StartGate(1);
    const a = gate.acquire();
    const b = gate.acquire();
    gate.close();
    expect(await b.granted).toBe(false);
    const late = gate.acquire();
    expect(late.state).toBe('released');
    expect(await late.granted).toBe(false);
    gate.release(a);
    expect(gate.acquire().state).toBe('held');
  });
});
