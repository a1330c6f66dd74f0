// Runs benchmark: submit→accepted and submit→completed latency and runs/s with the fake runtime,
// 1,000 runs over 1, 10 and 50 agents, with the link and polling only, on PGlite and Postgres.
// Loopback only, bounded: every configuration stops after BENCH_TIMEOUT_MS (default 120 s).
// Default: the full matrix minus 50 agents on polling; BENCH_FULL=1 runs all of it;
// BENCH_RUNS, BENCH_AGENTS (e.g. "1,10"), BENCH_BACKENDS, BENCH_MODES narrow it; BENCH_HOSTS spreads the
// agents over that many processes ("max": one each); BENCH_RATE submits at a steady rate (runs/s)
// instead of a burst, for latency below capacity.
import { fork } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { loadConfig, startControlPlane } from '@runt/control-plane';
import { redeemPairingCode } from '@runt/pairing';
import { ControlPlaneClient } from '@runt/protocol';
import { createTestDatabase } from '@runt/sql/testing';
import { mintToken } from '@runt/transport-auth';

const RUNS = Number(process.env.BENCH_RUNS ?? 1000);
const FULL = process.env.BENCH_FULL === '1';
const AGENT_COUNTS = (process.env.BENCH_AGENTS ?? '1,10,50').split(',').map(Number);
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'pglite,postgres').split(',');
const MODES = (process.env.BENCH_MODES ?? 'link,poll').split(',');
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS ?? 120_000);
// Agent host processes the agents are spread over (default 1: every agent in one process);
// "max" gives every agent its own process.
const HOSTS = process.env.BENCH_HOSTS ?? '1';
// Submit at this steady rate (runs/s, one at a time) instead of a burst: latency below capacity.
const RATE = Number(process.env.BENCH_RATE ?? 0);
const MAX_RUNS_PER_AGENT = 4;
const POLL_MS = 250;

const pct = (xs, p) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};

async function measure(backend, agentCount, mode) {
  const t = await createTestDatabase(backend);
  const adminToken = mintToken('admin');
  const cp = await startControlPlane(
    loadConfig(
      {},
      {
        host: '127.0.0.1',
        port: 0,
        adminToken,
        dataDir: mkdtempSync(join(tmpdir(), 'runt-bench-cp-')),
        logLevel: 'error',
      },
    ),
    { db: t.db, logDestination: new Writable({ write: (_c, _e, cb) => cb() }) },
  );
  const admin = new ControlPlaneClient({ url: cp.url, token: adminToken });
  const agents = [];
  for (let i = 0; i < agentCount; i++) {
    const { pairing } = await admin.mintPairingCode();
    const r = await redeemPairingCode(cp.url, pairing.code, { display_name: `bench-${i}` });
    agents.push({ token: r.credential.token, workstationId: r.workstation.id });
  }
  const hostCount = Math.max(1, Math.min(agentCount, HOSTS === 'max' ? agentCount : Number(HOSTS)));
  const hosts = Array.from({ length: hostCount }, (_, h) =>
    fork(new URL('./agent-host.mjs', import.meta.url), [], {
      env: {
        ...process.env,
        BENCH_AGENTS: JSON.stringify({
          url: cp.url,
          agents: agents.filter((_, i) => i % hostCount === h),
          link: mode === 'link',
          maxRuns: MAX_RUNS_PER_AGENT,
          pollIntervalMs: POLL_MS,
        }),
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    }),
  );
  await Promise.all(
    hosts.map(
      (host) =>
        new Promise((resolve, reject) => {
          host.once('message', resolve);
          host.once('exit', (c) => reject(new Error(`agent host exited ${c}`)));
        }),
    ),
  );
  if (mode === 'link') {
    // Wait until every link is up (the control plane knows the workstation as linked).
    for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
      const { rows } = await t.db
        .query(`select count(*)::int as n from workstations where link_state = 'connected'`)
        .catch(() => ({ rows: [{ n: agentCount }] }));
      if (rows[0].n >= agentCount) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const started = Date.now();
  const ids = [];
  if (RATE > 0) {
    const pending = [];
    for (let i = 0; i < RUNS; i++) {
      const due = started + (i * 1000) / RATE;
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
      pending.push(
        admin
          .submitRun({ runtime: 'fake', command: ['sh', '-c', 'echo hi'] })
          .then((b) => ids.push(b.run.id)),
      );
    }
    await Promise.all(pending);
  } else {
    for (let i = 0; i < RUNS; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(50, RUNS - i) }, () =>
          admin.submitRun({ runtime: 'fake', command: ['sh', '-c', 'echo hi'] }),
        ),
      );
      ids.push(...batch.map((b) => b.run.id));
    }
  }
  let finished = 0;
  const deadline = started + TIMEOUT_MS;
  while (Date.now() < deadline) {
    const { rows } = await t.db.query(
      `select count(*)::int as n from runs where status in ('completed','failed','cancelled','blocked')`,
    );
    finished = rows[0].n;
    if (finished >= RUNS) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const { rows } = await t.db.query(
    `select status, extract(epoch from (accepted_at - created_at)) * 1000 as acc_ms, extract(epoch from (offered_at - created_at)) * 1000 as off_ms, extract(epoch from (finished_at - created_at)) * 1000 as fin_ms,
            extract(epoch from created_at) * 1000 as c, extract(epoch from finished_at) * 1000 as f
       from runs`,
  );
  const accepted = rows.filter((r) => r.acc_ms !== null).map((r) => Number(r.acc_ms));
  const offered = rows.filter((r) => r.off_ms !== null).map((r) => Number(r.off_ms));
  const done = rows.filter((r) => r.fin_ms !== null);
  const completed = rows.filter((r) => r.status === 'completed').length;
  const span =
    done.length > 0
      ? (Math.max(...done.map((r) => Number(r.f))) - Math.min(...rows.map((r) => Number(r.c)))) / 1000
      : NaN;
  await Promise.all(
    hosts.map((host) => {
      const exited = new Promise((r) => host.once('exit', r));
      host.kill('SIGTERM');
      return exited;
    }),
  );
  await cp.close();
  await t.dispose();
  void ids;
  return {
    backend,
    agents: agentCount,
    hosts: hostCount,
    rate: RATE || 'burst',
    mode,
    runs: RUNS,
    completed,
    finished,
    offered_p50_ms: pct(offered, 50),
    accepted_p50_ms: pct(accepted, 50),
    accepted_p99_ms: pct(accepted, 99),
    completed_p50_ms: pct(
      done.map((r) => Number(r.fin_ms)),
      50,
    ),
    completed_p99_ms: pct(
      done.map((r) => Number(r.fin_ms)),
      99,
    ),
    runs_per_s: done.length / span,
  };
}

const results = [];
for (const backend of BACKENDS) {
  for (const mode of MODES) {
    for (const n of AGENT_COUNTS) {
      if (!FULL && mode === 'poll' && n === 50) continue;
      const r = await measure(backend, n, mode);
      results.push(r);
      const f = (x) => (Number.isFinite(x) ? x.toFixed(1) : '-');
      console.log(
        `${backend.padEnd(8)} ${mode.padEnd(4)} agents=${String(n).padEnd(3)} hosts=${String(r.hosts).padEnd(3)} submit=${r.rate} done=${r.finished}/${r.runs} completed=${r.completed} ` +
          `offered p50=${f(r.offered_p50_ms)}ms accepted p50=${f(r.accepted_p50_ms)}ms p99=${f(r.accepted_p99_ms)}ms  completed p50=${f(r.completed_p50_ms)}ms p99=${f(r.completed_p99_ms)}ms  ${f(r.runs_per_s)} runs/s`,
      );
    }
  }
}
if (process.env.BENCH_JSON) console.log(JSON.stringify(results));
