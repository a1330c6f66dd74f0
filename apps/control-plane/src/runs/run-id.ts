import { randomUUID } from 'node:crypto';

let lastMs = 0;
let seq = 0;
let prefix = '';

/**
 * A new run id: `run_` and a UUID of version 7 (RFC 9562): 48 bits of Unix milliseconds, a
 * 12-bit counter for the ids made in the same millisecond by this process, and 62 random bits
 * (the rest of a `randomUUID()`). Ids made later sort later, so every key of a run — `runs`'
 * primary key, its lease's and its events' — is added at the right edge of its index instead of
 * on a random leaf: fewer leaves touched per run, and fewer full-page images of them after each
 * checkpoint (docs/benchmarks.md, _Run ids in time order_). The clock going back keeps the last
 * millisecond, and a 4,096th id in one millisecond borrows the next.
 */
export function newRunId(): string {
  const now = Date.now();
  if (now > lastMs) {
    lastMs = now;
    seq = 0;
  } else if (++seq > 0xfff) {
    lastMs++;
    seq = 0;
  } else {
    return `${prefix}${(0x1000 | seq).toString(16).slice(1)}${randomUUID().slice(18)}`;
  }
  const ms = lastMs.toString(16).padStart(12, '0');
  prefix = `run_${ms.slice(0, 8)}-${ms.slice(8)}-7`;
  return `${prefix}000${randomUUID().slice(18)}`;
}
