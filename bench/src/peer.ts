import type { DrainResult } from './raw-ceiling.js';

/** Enqueue→start latencies of a paced run, in milliseconds. */
export interface PacedResult {
  jobs: number;
  started: number;
  rate: number;
  p50: number;
  p99: number;
}

/** One system the bench compares runt with: load a backlog, drain it; or take jobs at a steady rate. */
export interface Peer {
  /** Enqueues `jobs` no-op jobs in bulk (not timed). */
  prepare(jobs: number): Promise<void>;
  /** Processes the backlog; resolves when every job is completed. */
  drain(): Promise<DrainResult>;
  /** Enqueues `jobs` one per statement while the workers run; resolves when every job is completed. */
  burst?(jobs: number): Promise<DrainResult>;
  /** Enqueues `jobs` one at a time at `rate` per second while the workers run. */
  paced?(rate: number, jobs: number): Promise<PacedResult>;
  close(): Promise<void>;
}
