import { describe, expect, it } from 'vitest';
import { createBenchDatabase, measurePeer, rawCeilingPeer } from '../src/index.js';

describe('raw SKIP LOCKED ceiling', () => {
  for (const backend of ['pglite', 'postgres'] as const) {
    it(`claims and completes every job exactly once on ${backend}`, async () => {
      const db = backend === 'postgres' ? await createBenchDatabase('smoke') : undefined;
      try {
        const peer = await rawCeilingPeer({ backend, ...(db ? { url: db.url } : {}), workers: 4 });
        await peer.prepare(50);
        const r = await peer.drain();
        expect(r).toMatchObject({ jobs: 50, completed: 50 });
        expect(r.perSecond).toBeGreaterThan(0);
        // A second drain finds nothing left: no job was claimed twice or left behind.
        expect((await peer.drain()).completed).toBe(0);
        await peer.close();
      } finally {
        await db?.drop();
      }
    });
  }

  for (const backend of ['pglite', 'postgres'] as const) {
    it(`bursts: inserts while it drains, each job completed exactly once, on ${backend}`, async () => {
      const db = backend === 'postgres' ? await createBenchDatabase('smoke') : undefined;
      try {
        const peer = await rawCeilingPeer({ backend, ...(db ? { url: db.url } : {}), workers: 4 });
        const r = await peer.burst!(200);
        expect(r).toMatchObject({ jobs: 200, completed: 200 });
        // Nothing left queued or claimed twice.
        expect((await peer.drain()).completed).toBe(0);
        await peer.close();
      } finally {
        await db?.drop();
      }
    });
  }

  it('measures a peer in its own process with its CPU and drops its database', async () => {
    const m = await measurePeer({ peer: 'raw', backend: 'postgres', mode: 'drain', jobs: 50 }, 20_000);
    expect(m.drain).toMatchObject({ jobs: 50, completed: 50 });
    expect(m.cpuMsPerJob.total).toBeGreaterThanOrEqual(m.cpuMsPerJob.worker);
    expect(m.cpuMsPerJob.worker).toBeGreaterThanOrEqual(0);
  });
});
