import type { DrainResult } from './raw-ceiling.js';

/** Enqueue→start latencies of a paced run, in milliseconds. */
export interface PacedResult {
  jobs: number;
  started: number;
  rate: number;
  p50: number;
  p99: number;
}

/** What a warm-up did (printed, in no figure). */
export interface WarmUpResult {
  jobs: number;
  completed: number;
  seconds: number;
  /** How the warm-up ran, for the bench's line. */
  how: string;
}

/** One system the bench compares runt with: load a backlog, drain it; or take jobs at a steady rate. */
export interface Peer {
  /** Enqueues `jobs` no-op jobs in bulk (not timed). */
  prepare(jobs: number): Promise<void>;
  /**
   * Untimed warm-up before the measured phase (BENCH_WARMUP): `jobs` no-op jobs through the
   * peer's workers — the code path of `mode` where the peer has one per mode (pg-boss warms its
   * drain's fetch + complete loops whatever the mode) — every one completed, then the peer is left as if
   * fresh (nothing queued, no runner left running, nothing counted in the measured figures).
   */
  warmUp?(jobs: number, mode: 'drain' | 'burst' | 'paced'): Promise<WarmUpResult>;
  /** Processes the backlog; resolves when every job is completed. */
  drain(): Promise<DrainResult>;
  /**
   * Enqueues `jobs` while the workers run (raw: one per statement; graphile-worker: `addJobs` of
   * 1,000, 2 in flight), timed from the first insert; resolves when every job is completed.
   */
  burst?(jobs: number): Promise<DrainResult>;
  /** Enqueues `jobs` one at a time at `rate` per second while the workers run. */
  paced?(rate: number, jobs: number): Promise<PacedResult>;
  close(): Promise<void>;
}
