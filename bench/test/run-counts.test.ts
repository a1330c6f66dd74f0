import { describe, expect, it } from 'vitest';
import {
  countersByLabel,
  describeCounts,
  describeStragglers,
  labelDelta,
  stragglers,
  type RunTiming,
} from '../src/index.js';

describe("a phase's whole counts and stragglers", () => {
  const text = [
    '# HELP runt_cp_run_requeues_total Runs put back in the queue, by reason',
    '# TYPE runt_cp_run_requeues_total counter',
    'runt_cp_run_requeues_total{reason="offer-timeout"} 3',
    'runt_cp_run_requeues_total{reason="declined"} 1',
    'runt_cp_run_offers_total 10001',
  ].join('\n');

  it('reads a counter per label value, and one re-queue in 10,000 runs shows as 1', () => {
    const before = countersByLabel(text, 'runt_cp_run_requeues_total', 'reason');
    expect(before).toEqual({ 'offer-timeout': 3, declined: 1 });
    const after = countersByLabel(
      text.replace('{reason="offer-timeout"} 3', '{reason="offer-timeout"} 4'),
      'runt_cp_run_requeues_total',
      'reason',
    );
    const d = labelDelta(after, before);
    expect(describeCounts(d)).toBe('1 (offer-timeout 1)');
    expect(describeCounts(labelDelta(before, before))).toBe('0');
    // A counter with no sample yet is {} (0); one the control plane does not export, '-'.
    expect(countersByLabel('# TYPE x_total counter', 'x_total', 'reason')).toEqual({});
    expect(describeCounts(countersByLabel(text, 'runt_cp_missing_total', 'reason'))).toBe('-');
  });

  const run = (i: number, finishedMs: number): RunTiming => ({
    id: `run_${i}`,
    createdMs: 0,
    offeredMs: 1,
    acceptedMs: 2,
    startedMs: 3,
    finishedMs,
    attempt: 1,
    workstation: 'ws_1',
  });

  it('names the last runs of a phase whose last finish is > 1 s after its p99 finish', () => {
    const even = Array.from({ length: 1000 }, (_, i) => run(i, 1000 + i * 5));
    expect(stragglers(even)).toBeUndefined();
    const late = [...even, run(1000, 1000 + 999 * 5 + 3000)];
    const s = stragglers(late, { n: 2 });
    expect(s?.slowest.map((r) => r.id)).toEqual(['run_1000', 'run_999']);
    expect(describeStragglers(s!, 0)).toMatch(
      /^stragglers: the last run finished 3\.\d\d s after the p99 finish; the last 2: run_1000 \(created \+0\.000 s, offered \+0\.001 s, accepted \+0\.002 s, started \+0\.003 s, finished \+8\.995 s, attempt 1, ws_1\)/,
    );
  });
});
