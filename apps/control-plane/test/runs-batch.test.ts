import { randomBytes } from 'node:crypto';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './harness.js';

/** `POST /api/runs/batch` (issue 9): up to 1,000 runs in one request and one insert. */
describe.each(TEST_BACKENDS)('batch submit on %s', (backend) => {
  let h: Harness;
  // No agent is linked: submitted runs stay queued, so the queue order can be read back.
  beforeAll(async () => {
    h = await startHarness(
      backend,
      {},
      { schedulerTickMs: 60_000, secretKey: randomBytes(32).toString('base64') },
    );
  });
  afterAll(async () => h?.close());

  const submit = (runs: unknown[], token = h.adminToken) =>
    h.api('/api/runs/batch', { token, body: { runs } });
  const count = async () =>
    Number((await h.cp.db.query<{ n: number | string }>('select count(*) as n from runs')).rows[0]!.n);

  it('submits 1,000 runs in one request, answered and queued in the order given', async () => {
    const runs = Array.from({ length: 1000 }, (_, i) => ({
      runtime: 'fake',
      command: ['echo', String(i)],
      ...(i === 7 ? { env: { K: 'v' }, max_attempts: 1, timeout_s: 60 } : {}),
    }));
    const r = await submit(runs);
    expect(r.status).toBe(201);
    const out = r.json.runs as Array<{
      run: { id: string; status: string; command: string[] };
      created: boolean;
    }>;
    expect(out).toHaveLength(1000);
    expect(out.every((o) => o.created && o.run.status === 'queued')).toBe(true);
    expect(out.map((o) => o.run.command[1])).toEqual(runs.map((_, i) => String(i)));
    expect(new Set(out.map((o) => o.run.id)).size).toBe(1000);
    expect(out[7]!.run).toMatchObject({ env: { K: 'v' }, max_attempts: 1, timeout_s: 60 });
    // The queue keeps the order of the batch.
    const positions = await h.cp.db.query<{ id: string }>(
      'select id from runs where id = any($1::text[]) order by position',
      [out.map((o) => o.run.id)],
    );
    expect(positions.rows.map((row) => row.id)).toEqual(out.map((o) => o.run.id));
    const one = await h.api(`/api/runs/${out[999]!.run.id}`, { token: h.adminToken });
    expect(one.json.run.command).toEqual(['echo', '999']);
  });

  // The answer (made from the insert's rows) must be, byte for byte, what a read of the run
  // answers — every field, the jsonb objects' keys in the order jsonb keeps them (here not the
  // order given), nested ones too.
  it('answers each run exactly as a read of it does, every field set', async () => {
    const full = {
      runtime: 'fake',
      image: 'img:1',
      command: ['sh', '-c', 'echo "é ✓"'],
      env: {
        LONGER_NAME: 'a',
        B: 'b',
        AA: 'c',
        TOKEN: { value: 's3cret', secret: true },
        A: { value: 'x', secret: true },
      },
      workdir: '/w',
      ready_when: { log_line: 'ready' },
      placement: { labels: { zone: 'b', os: 'linux', a: '1' } },
      resources: { cpus: 0.3, memory_bytes: 123_456_789_012 },
      timeout_s: 60,
      queue_timeout_s: 600,
      retry: { on: ['runner-lost', 137], backoff: { max_s: 30, initial_s: 1.5 } },
    };
    const r = await submit([full, { runtime: 'fake', idempotency_key: 'exact-1' }, { runtime: 'fake' }]);
    expect(r.status, JSON.stringify(r.json)).toBe(201);
    for (const o of r.json.runs as Array<{ run: { id: string } }>) {
      const read = await h.api(`/api/runs/${o.run.id}`, { token: h.adminToken });
      const { attempts: _a, pending_reason: _p, ...run } = read.json.run;
      expect(JSON.stringify(o.run)).toBe(JSON.stringify(run));
    }
    expect(Object.keys(r.json.runs[0].run.env)).not.toEqual(Object.keys(full.env));
  });

  it('keeps each run’s idempotency key: a repeat answers the first runs (200), a new key in it is created', async () => {
    const first = await submit([
      { runtime: 'fake', command: ['a'], idempotency_key: 'batch-a' },
      { runtime: 'fake', command: ['b'], idempotency_key: 'batch-b' },
      { runtime: 'fake', command: ['n'] },
      // the same key twice in one batch: one run
      { runtime: 'fake', command: ['a2'], idempotency_key: 'batch-a' },
    ]);
    expect(first.status).toBe(201);
    const [a, b, n, a2] = first.json.runs as Array<{ run: { id: string }; created: boolean }>;
    expect([a!.created, b!.created, n!.created, a2!.created]).toEqual([true, true, true, false]);
    expect(a2!.run.id).toBe(a!.run.id);

    const before = await count();
    const repeat = await submit([
      { runtime: 'fake', command: ['b'], idempotency_key: 'batch-b' },
      { runtime: 'fake', command: ['a'], idempotency_key: 'batch-a' },
    ]);
    expect(repeat.status).toBe(200);
    expect(
      repeat.json.runs.map((o: { run: { id: string }; created: boolean }) => [o.run.id, o.created]),
    ).toEqual([
      [b!.run.id, false],
      [a!.run.id, false],
    ]);
    expect(await count()).toBe(before);

    const mixed = await submit([
      { runtime: 'fake', command: ['a'], idempotency_key: 'batch-a' },
      { runtime: 'fake', command: ['c'], idempotency_key: 'batch-c' },
    ]);
    expect(mixed.status).toBe(201);
    expect(mixed.json.runs.map((o: { created: boolean }) => o.created)).toEqual([false, true]);
    expect(mixed.json.runs[0].run.id).toBe(a!.run.id);
    // The single submit honours the keys the batch wrote, and the other way round.
    const single = await h.api('/api/runs', {
      token: h.adminToken,
      body: { runtime: 'fake', command: ['c'], idempotency_key: 'batch-c' },
    });
    expect([single.status, single.json.run.id]).toEqual([200, mixed.json.runs[1].run.id]);
  });

  it('refuses a batch with a bad run: 400 naming its index, and submits none of it', async () => {
    const before = await count();
    const bad = await submit([
      { runtime: 'fake', command: ['ok'] },
      { runtime: 'fake', command: ['ok'] },
      { runtime: 'fake', command: ['ok'], max_attempts: 0 },
    ]);
    expect(bad.status).toBe(400);
    expect(bad.json.error.code).toBe('invalid-request');
    expect(bad.json.error.message).toMatch(/^runs\[2\]\.max_attempts: /);
    expect(bad.json.error.details[0]).toMatchObject({ index: 2, path: 'max_attempts' });

    const container = await submit([{ runtime: 'fake', command: ['ok'] }, { runtime: 'docker' }]);
    expect([container.status, container.json.error.details[0].index]).toEqual([400, 1]);
    expect(container.json.error.message).toMatch(/^runs\[1\]\.image: /);

    const missingBundle = await submit([
      { runtime: 'fake', command: ['ok'] },
      { runtime: 'fake', command: ['ok'], bundle: { sha256: 'a'.repeat(64) } },
    ]);
    expect([missingBundle.status, missingBundle.json.error.code, missingBundle.json.error.details]).toEqual([
      400,
      'bundle-missing',
      { index: 1 },
    ]);
    const unknownWs = await submit([
      { runtime: 'fake', command: ['ok'], placement: { workstation_id: 'ws_nope' } },
    ]);
    expect([unknownWs.status, unknownWs.json.error.details]).toEqual([400, { index: 0 }]);

    for (const body of [
      { runs: [] },
      { runs: {} },
      {},
      { runs: Array(1001).fill({ runtime: 'fake', command: ['x'] }) },
    ]) {
      const r = await h.api('/api/runs/batch', { token: h.adminToken, body });
      expect(r.status, JSON.stringify(body).slice(0, 40)).toBe(400);
      expect(r.json.error.code).toBe('invalid-request');
    }
    expect(await count()).toBe(before);
  });

  it('is the admin’s: a workstation token or none is refused', async () => {
    expect((await h.api('/api/runs/batch', { body: { runs: [{ runtime: 'fake' }] } })).status).toBe(401);
  });
});
