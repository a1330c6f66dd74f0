import fs, { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { createBenchDatabase, measurePeer, rawCeilingPeer } from '../src/index.js';
import { useBenchLock } from './bench-lock.js';

describe('raw SKIP LOCKED ceiling', () => {
  // A peer measured on Postgres starts on a CHECKPOINT: under the benches' lock (bench-lock.ts).
  useBenchLock();

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

  // The two raw PGlite peers the bench prints (docs/benchmarks.md): synced, every commit waits
  // for an fdatasync of the WAL (2 per job: the claim's and the complete's); unsynced, none does.
  for (const unsynced of [false, true]) {
    it(`on a PGlite data directory ${unsynced ? 'commits without' : 'syncs the WAL at every'} commit${unsynced ? ' syncs' : ''}`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'runt-raw-sync-'));
      const syncs = vi.spyOn(fs, 'fdatasyncSync');
      try {
        const peer = await rawCeilingPeer({
          backend: 'pglite',
          dataDir: dir,
          workers: 4,
          ...(unsynced ? { unsynced } : {}),
        });
        await peer.prepare(40);
        syncs.mockClear();
        expect((await peer.drain()).completed).toBe(40);
        if (unsynced) expect(syncs).not.toHaveBeenCalled();
        else expect(syncs.mock.calls.length).toBeGreaterThanOrEqual(80);
        await peer.close();
      } finally {
        syncs.mockRestore();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
