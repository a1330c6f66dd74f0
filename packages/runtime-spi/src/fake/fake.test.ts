import { getEventListeners } from 'node:events';
import v8 from 'node:v8';
import { describe, expect, it } from 'vitest';
import { describeRuntimeConformance, waitForTerminalText } from '../conformance/index.js';
import { RuntimeError, isRuntimeError } from '../errors.js';
import { FakeEngine, createFakeRuntime } from './index.js';

const MISSING = 'runt-test/does-not-exist:0';
const engine = new FakeEngine();

describeRuntimeConformance({
  name: 'fake',
  createRuntime: () => createFakeRuntime({ engine, images: (ref) => ref !== MISSING }),
  image: 'busybox:fake',
  missingImage: MISSING,
});

const METHODS = [
  'available',
  'ensureImage',
  'create',
  'start',
  'stop',
  'remove',
  'inspect',
  'list',
  'logs',
  'wait',
  'exec',
  'terminal',
] as const;

/** Calls `method` on a runtime that has an instance "target" (running) and image "img" locally. */
async function call(
  rt: ReturnType<typeof createFakeRuntime>,
  method: (typeof METHODS)[number],
): Promise<unknown> {
  switch (method) {
    case 'available':
      return rt.available();
    case 'ensureImage':
      return rt.ensureImage('img');
    case 'create':
      return rt.create({ name: 'other' });
    case 'start':
      return rt.start('target');
    case 'stop':
      return rt.stop('target', { timeoutMs: 10 });
    case 'remove':
      return rt.remove('target');
    case 'inspect':
      return rt.inspect('target');
    case 'list':
      return rt.list();
    case 'logs': {
      const chunks = [];
      for await (const chunk of rt.logs('target')) chunks.push(chunk);
      return chunks;
    }
    case 'wait':
      return rt.wait('target');
    case 'exec':
      return rt.exec('target', ['true']);
    case 'terminal':
      return rt.terminal('target');
  }
}

async function withTarget(options: Parameters<typeof createFakeRuntime>[0] = {}) {
  const shared = new FakeEngine();
  const setup = createFakeRuntime({ engine: shared });
  await setup.create({ name: 'target', command: ['/bin/sh', '-c', 'exit 0'] });
  return createFakeRuntime({ ...options, engine: shared });
}

describe('fake runtime', () => {
  it.each(METHODS)('fails %s when scripted to', async (method) => {
    const scripted = new RuntimeError('internal', `scripted ${method} failure`);
    const rt = await withTarget({ failures: { [method]: scripted } });
    await expect(call(rt, method)).rejects.toBe(scripted);
    expect(rt.calls.map((c) => c.method)).toEqual([method]);
  });

  it('keeps an instance record out of dictionary mode through create, start, exit and restart (issue 9)', async () => {
    // `%HasFastProperties` needs natives syntax, allowed before the function using it is compiled.
    v8.setFlagsFromString('--allow-natives-syntax');
    // eslint-disable-next-line @typescript-eslint/no-implied-eval -- natives syntax only parses in code compiled after the flag
    const fast = new Function('o', 'return %HasFastProperties(o)') as (o: object) => boolean;
    const engine = new FakeEngine();
    const runtime = createFakeRuntime({ engine, recordCalls: false });
    const a = await runtime.create({ name: 'a', command: ['/bin/sh', '-c', 'echo hi'] });
    const rec = engine.instances.get(a.id)!;
    const seen = [fast(rec)];
    await runtime.start(a.id);
    seen.push(fast(rec));
    expect((await runtime.wait(a.id)).exitCode).toBe(0);
    seen.push(fast(rec));
    await runtime.start(a.id); // a restart clears the exit
    await runtime.wait(a.id);
    seen.push(fast(rec));
    expect(seen).toEqual([true, true, true, true]);
    expect((await runtime.inspect(a.id))?.exitCode).toBe(0);
  });

  it('finds a name without scanning every instance; a name is refused while taken and free again once removed (issue 9)', async () => {
    const engine = new FakeEngine();
    const runtime = createFakeRuntime({ engine, recordCalls: false });
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) ids.push((await runtime.create({ name: `run-${i}`, command: [] })).id);
    // counted from here: a create or a lookup by name reads no instance but its own
    let scans = 0;
    const values = engine.instances.values.bind(engine.instances);
    engine.instances.values = () => {
      scans++;
      return values();
    };
    const last = await runtime.create({ name: 'run-50', command: [] });
    expect(engine.find('run-7')?.id).toBe(ids[7]);
    expect((await runtime.inspect('run-50'))?.id).toBe(last.id);
    await expect(runtime.create({ name: 'run-7', command: [] })).rejects.toMatchObject({
      code: 'instance-exists',
    });
    expect(scans).toBe(0);
    await runtime.remove(ids[7]!);
    expect(engine.find('run-7')).toBeUndefined();
    const again = await runtime.create({ name: 'run-7', command: [] });
    expect(engine.find('run-7')?.id).toBe(again.id);
    expect(scans).toBe(0);
  });

  it('wakes only the waiters of the instance that changed (issue 9: not every run in flight per change)', async () => {
    const engine = new FakeEngine();
    const runtime = createFakeRuntime({ engine });
    const a = await runtime.create({ name: 'a', command: ['/bin/sh', '-c', 'exit 0'] });
    const b = await runtime.create({ name: 'b', command: ['/bin/sh', '-c', 'exit 0'] });
    const recA = engine.instances.get(a.id)!;
    let woken = 0;
    const waiting = engine.nextChange(undefined, recA).then(() => woken++);
    let anyChange = 0;
    void engine.nextChange().then(() => anyChange++);
    await runtime.start(b.id);
    await runtime.wait(b.id);
    await new Promise((r) => setImmediate(r));
    expect(woken).toBe(0);
    expect(anyChange).toBe(1);
    await runtime.start(a.id);
    await waiting;
    expect(woken).toBe(1);
    expect((await runtime.wait(a.id)).exitCode).toBe(0);
  });

  it('adds one abort listener per signal however many waits use it, and its abort still wakes them all', async () => {
    const engine = new FakeEngine();
    const runtime = createFakeRuntime({ engine });
    const a = await runtime.create({ name: 'a', command: ['/bin/sh', '-c', 'sleep infinity'] });
    await runtime.start(a.id);
    const rec = engine.instances.get(a.id)!;
    const stop = new AbortController();
    let woken = 0;
    const waits = [
      engine.nextChange(stop.signal, rec),
      engine.nextChange(stop.signal, rec),
      engine.nextChange(stop.signal),
    ].map((p) => p.then(() => woken++));
    // Woken by a change and waiting again: still the one listener.
    engine.changed(rec);
    await Promise.all(waits);
    const again = [engine.nextChange(stop.signal, rec), engine.nextChange(stop.signal)];
    expect(getEventListeners(stop.signal, 'abort')).toHaveLength(1);
    stop.abort();
    await Promise.all(again);
    expect(woken).toBe(3);
    // A wait on an aborted signal ends at once; the runtime's wait rejects with it.
    await engine.nextChange(stop.signal, rec);
    await expect(runtime.wait(a.id, { signal: stop.signal })).rejects.toMatchObject({ code: 'aborted' });
    await runtime.remove(a.id);
  });

  it("keeps its own copy of a spec: the caller's later changes to its lists and maps do not reach the instance", async () => {
    const rt = createFakeRuntime();
    const spec = {
      name: 'copied',
      command: ['/bin/sh', '-c', 'echo $A'],
      env: { A: 'before' },
      labels: { team: 'a' },
      limits: { cpus: 1 },
      workdir: '/w',
    };
    const inst = await rt.create(spec);
    spec.command.push('extra');
    spec.env.A = 'after';
    spec.labels.team = 'b';
    spec.limits.cpus = 2;
    const record = rt.engine.find(inst.id)!;
    expect(record.spec).toEqual({
      name: 'copied',
      command: ['/bin/sh', '-c', 'echo $A'],
      env: { A: 'before' },
      labels: { team: 'a' },
      limits: { cpus: 1 },
      workdir: '/w',
    });
    expect((await rt.inspect(inst.id))?.labels).toMatchObject({ team: 'a' });
    await rt.start(inst.id);
    await rt.wait(inst.id);
    expect(record.logs.map((c) => c.data).join('')).toBe('before\n');
    await rt.close();
  });

  it('keeps no calls with recordCalls: false; a failure function still sees each one', async () => {
    const seen: string[] = [];
    const rt = createFakeRuntime({
      recordCalls: false,
      failures: { start: (call) => void seen.push(call.method) },
    });
    const a = await rt.create({ name: 'a', command: ['/bin/sh', '-c', 'exit 0'] });
    await rt.start(a.id);
    expect(await rt.wait(a.id)).toEqual({ exitCode: 0 });
    await rt.remove(a.id);
    expect(rt.calls).toEqual([]);
    expect(seen).toEqual(['start']);
  });

  it('fails only the next call with failNext, and lets a failure function pick calls', async () => {
    const rt = createFakeRuntime({
      failures: {
        create: (c) =>
          (c.args[0] as { name: string }).name === 'bad'
            ? new RuntimeError('invalid-spec', 'bad name')
            : undefined,
      },
    });
    rt.failNext('create', new RuntimeError('start-failed', 'once'));
    await expect(rt.create({ name: 'a' })).rejects.toMatchObject({ code: 'start-failed' });
    expect((await rt.create({ name: 'a' })).name).toBe('a');
    await expect(rt.create({ name: 'bad' })).rejects.toSatisfy((e) => isRuntimeError(e, 'invalid-spec'));
  });

  it('records every call with its arguments, and numbers instances deterministically', async () => {
    const rt = createFakeRuntime();
    const a = await rt.create({
      name: 'a',
      labels: { x: '1' },
      command: ['/bin/sh', '-c', 'echo hi; exit 3'],
    });
    const b = await rt.create({ name: 'b' });
    expect([a.id, b.id]).toEqual(['fake-000001', 'fake-000002']);
    await rt.start(a.id);
    expect(await rt.wait(a.id)).toEqual({ exitCode: 3 });
    await rt.list({ labels: { x: '1' } });
    expect(rt.calls.map((c) => c.method)).toEqual(['create', 'create', 'start', 'wait', 'list']);
    expect(rt.callsOf('create')[0]?.args[0]).toMatchObject({ name: 'a', labels: { x: '1' } });
    expect(rt.callsOf('list')[0]?.args[0]).toEqual({ labels: { x: '1' } });
  });

  it('delays a method as scripted, and the call signal cuts the delay short', async () => {
    const rt = await withTarget({ delays: { start: 60_000 } });
    const controller = new AbortController();
    const starting = rt.start('target', { signal: controller.signal });
    controller.abort();
    await expect(starting).rejects.toSatisfy((e) => isRuntimeError(e, 'aborted'));
    expect((await rt.inspect('target'))?.state).toBe('created');
  });

  it('pulls once for concurrent ensureImage calls; a caller giving up does not cancel it, close() does', async () => {
    const rt = createFakeRuntime({ pullDelayMs: 200 });
    const giveUp = new AbortController();
    const abandoned = rt.ensureImage('img:1', { signal: giveUp.signal });
    const others = Promise.all([rt.ensureImage('img:1'), rt.ensureImage('img:1')]);
    giveUp.abort();
    await expect(abandoned).rejects.toSatisfy((e) => isRuntimeError(e, 'aborted'));
    const [a, b] = await others;
    expect(a.id).toBe(b.id);
    expect(rt.pulls).toEqual(['img:1']);
    await rt.ensureImage('img:1');
    expect(rt.pulls).toEqual(['img:1']);

    const pulling = rt.ensureImage('img:2');
    await rt.close();
    await expect(pulling).rejects.toSatisfy((e) => isRuntimeError(e, 'aborted'));
  });

  it('reports what available() is scripted to say', async () => {
    const rt = createFakeRuntime({ availability: { available: false, reason: 'engine is on holiday' } });
    expect(await rt.available()).toEqual({ available: false, reason: 'engine is on holiday' });
  });

  it('runs the documented shell subset and says so when a script goes beyond it', async () => {
    const rt = createFakeRuntime();
    const inst = await rt.create({
      name: 'shell',
      env: { WHO: 'world' },
      workdir: '/srv',
      command: ['/bin/sh', '-c', 'sleep infinity'],
    });
    await rt.start(inst.id);
    const run = async (script: string) => {
      const handle = await rt.exec(inst.id, ['/bin/sh', '-c', script]);
      let out = '';
      for await (const chunk of handle.output) out += `${chunk.stream}:${chunk.data}`;
      return { out, code: (await handle.exit).exitCode };
    };
    expect(await run('echo "hello $WHO" \'$WHO\' ${WHO}; pwd; echo -n x; echo y >&2')).toEqual({
      out: 'stdout:hello world $WHO world\nstdout:/srv\nstdout:xstderr:y\n',
      code: 0,
    });
    expect(await run('false; exit $?')).toEqual({ out: '', code: 1 });
    expect(await run('frobnicate')).toEqual({ out: 'stderr:sh: frobnicate: not found\n', code: 127 });
    expect((await run('echo a | cat')).code).toBe(2);
    expect((await run('echo a && echo b')).code).toBe(2);
  });

  it('echoes terminal input and runs each line', async () => {
    const rt = createFakeRuntime();
    const inst = await rt.create({ name: 'term', command: ['/bin/sh', '-c', 'sleep infinity'] });
    await rt.start(inst.id);
    const session = await rt.terminal(inst.id);
    let output = '';
    session.onData((d) => {
      output += d;
    });
    session.write('echo hi\r');
    await waitForTerminalText(session, 'hi\r\n$ ', {
      get output() {
        return output;
      },
    });
    session.write('exit 4\r');
    expect(await session.exit).toEqual({ exitCode: 4 });
    expect(output).toBe('$ echo hi\r\nhi\r\n$ exit 4\r\n');
  });
});
