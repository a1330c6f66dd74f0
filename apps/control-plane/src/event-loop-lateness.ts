import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

/**
 * How often the event-loop delay histogram samples, in ms. prom-client's default, 10 ms, is a
 * libuv timer on the main thread: an idle control plane woke 100 times a second for it
 * (`voluntary_ctxt_switches`, strace: `epoll_pwait` timing out every 10 ms), each wake-up a
 * process asking the machine's cores for time — with replicas, Postgres and agents on two
 * shared cores, also inside a cross-replica offer's window (issue 10; docs/benchmarks.md). Once a
 * second, like the scheduler's tick and the sweeper. test/idle-wakeups.test.ts counts an idle
 * process's wake-ups.
 */
export const EVENT_LOOP_SAMPLE_MS = 1000;

const STATS = {
  min: 'The minimum',
  max: 'The maximum',
  mean: 'The mean',
  stddev: 'The standard deviation',
  p50: 'The 50th percentile',
  p90: 'The 90th percentile',
  p99: 'The 99th percentile',
} as const;
type Stat = keyof typeof STATS;

/** One histogram per process (one event loop), made by the first registry that asks. */
let histogram: IntervalHistogram | undefined;

/**
 * Replaces prom-client's `<prefix>nodejs_eventloop_lag_{min,max,mean,stddev,p50,p90,p99}_seconds`
 * with gauges of the same names that report how LATE the loop ran its timer, in seconds.
 *
 * Node's histogram records the time between two firings of its sampling timer, so every value
 * holds the sampling interval itself: harmless at prom-client's 10 ms (an idle loop read ~0.010
 * s), but at {@link EVENT_LOOP_SAMPLE_MS} an idle loop would read ~1.001 s, and a scrape with no
 * sample since the last (prom-client resets at each) min 9223372036 and mean NaN. These subtract
 * the interval (never below 0; `stddev` is unchanged by it) and keep the last values while no
 * sample came in. A stall shorter than the interval that does not straddle a firing goes
 * unseen — the price of waking once a second; `<prefix>nodejs_eventloop_lag_seconds` (a
 * `setImmediate` at scrape time) still measures the loop at every scrape.
 *
 * Call after `collectDefaultMetrics({ register: registry, prefix,
 * eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS })` (its own histogram then samples at the
 * same interval: both timers are due together, one wake-up).
 */
export function registerEventLoopLateness(registry: Registry, prefix: string): void {
  if (!histogram) {
    histogram = monitorEventLoopDelay({ resolution: EVENT_LOOP_SAMPLE_MS });
    histogram.enable();
  }
  const h = histogram;
  const name = (stat: Stat) => `${prefix}nodejs_eventloop_lag_${stat}_seconds`;
  for (const stat of Object.keys(STATS) as Stat[]) registry.removeSingleMetric(name(stat));
  const late = (ns: number) => Math.max(0, ns / 1e9 - EVENT_LOOP_SAMPLE_MS / 1e3);
  const gauges = {} as Record<Stat, Gauge>;
  for (const stat of Object.keys(STATS) as Stat[]) {
    gauges[stat] = new Gauge({
      name: name(stat),
      help: `${STATS[stat]} of how late the event loop ran its ${EVENT_LOOP_SAMPLE_MS} ms sampling timer (seconds) since the last scrape`,
      registers: [registry],
      // The first gauge's collect sets all seven (a registry collects in registration order,
      // each collect before its values are read: as prom-client's own event-loop gauges do).
      ...(stat === 'min'
        ? {
            collect() {
              if (h.count === 0) return; // no sample since the last scrape: keep the last values
              gauges.min.set(late(h.min));
              gauges.max.set(late(h.max));
              gauges.mean.set(late(h.mean));
              gauges.stddev.set(h.stddev / 1e9);
              gauges.p50.set(late(h.percentile(50)));
              gauges.p90.set(late(h.percentile(90)));
              gauges.p99.set(late(h.percentile(99)));
              h.reset();
            },
          }
        : {}),
    });
  }
}
