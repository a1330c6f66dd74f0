import { RuntSystem, loadAverage } from './dist/index.js';
const via = process.env.VIA ?? 'batch';
const s = await RuntSystem.start({ backend: 'postgres', agents: 2, maxRuns: 25 });
try {
  const m = await s.burst(Number(process.env.N ?? 10000), 240000, via);
  console.log(via, m.runsPerSecond.toFixed(0), 'runs/s', m.seconds.toFixed(2), 's; cpu', JSON.stringify(m.cpuMsPerRun), 'load', m.load, 'submit s', m.submitSeconds);
  const rows = await s.sql(`select workstation_id ws, extract(epoch from created_at)*1000 c, extract(epoch from offered_at)*1000 o, extract(epoch from accepted_at)*1000 a, extract(epoch from started_at)*1000 st, extract(epoch from finished_at)*1000 f from runs`);
  const q = (xs, p) => { xs = xs.filter(Number.isFinite).sort((a, b) => a - b); return xs[Math.floor((xs.length - 1) * p)]?.toFixed(2); };
  const d = (k1, k2) => rows.map((r) => Number(r[k2]) - Number(r[k1]));
  for (const [a, b] of [['c','o'],['o','a'],['a','st'],['st','f'],['o','f']]) console.log(`${a}->${b} p10 ${q(d(a,b),.1)} p50 ${q(d(a,b),.5)} p90 ${q(d(a,b),.9)}`);
  // Slots busy over time: mean runs between offered and finished, per 100 ms bucket.
  const t0 = Math.min(...rows.map((r) => Number(r.c))), t1 = Math.max(...rows.map((r) => Number(r.f)));
  const buckets = [];
  for (let t = t0; t < t1; t += 500) buckets.push(rows.filter((r) => Number(r.o) <= t && Number(r.f) > t).length);
  console.log('held slots every 500 ms:', buckets.join(' '));
  const queued = []; for (let t = t0; t < t1; t += 500) queued.push(rows.filter((r) => Number(r.c) <= t && !(Number(r.o) <= t)).length);
  console.log('queued every 500 ms:', queued.join(' '));
  const wss = [...new Set(rows.map((r) => r.ws))];
  const mid = t0 + (t1 - t0) / 2;
  for (const ws of wss) {
    const mine = rows.filter((r) => r.ws === ws);
    const line = [];
    for (let t = mid; t < mid + 600; t += 5) line.push(mine.filter((r) => Number(r.o) <= t && Number(r.f) > t).length);
    console.log(ws.slice(0, 8), 'held every 5 ms:', line.join(' '));
  }
} finally { await s.close(); }
