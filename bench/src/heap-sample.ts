// Preloaded into an agent (`BENCH_AGENT_NODE_ARGS='--import=<bench>/dist/heap-sample.js'`): a
// sampling heap profile of the process's whole life that keeps the objects GC collected, so its
// sizes are what was allocated, not what is still held (Node's own --heap-prof drops collected
// objects). Written at exit to $BENCH_HEAP_SAMPLE_DIR/heap-<pid>.heapprofile (Chrome DevTools'
// format; self sizes are already scaled to estimated bytes).
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';

const dir = process.env.BENCH_HEAP_SAMPLE_DIR ?? '.';
const session = new Session();
session.connect();
session.post('HeapProfiler.enable');
session.post('HeapProfiler.startSampling', {
  samplingInterval: Number(process.env.BENCH_HEAP_SAMPLE_INTERVAL ?? 16384),
  includeObjectsCollectedByMajorGC: true,
  includeObjectsCollectedByMinorGC: true,
});
// The main thread's inspector session answers synchronously: the profile is written before the
// process is gone.
process.on('exit', () => {
  session.post('HeapProfiler.stopSampling', (err, r) => {
    if (!err) writeFileSync(`${dir}/heap-${process.pid}.heapprofile`, JSON.stringify(r.profile));
  });
});
