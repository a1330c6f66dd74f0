// Page speed of the web panel (issue 11): each page's render time with 100 workstations and
// 10,000 runs in the database, the statements a render sends, the bytes of a first load (HTML +
// the assets it names), and how long a log line takes to reach an open run page in Chromium.
//
//   node dist/panel-bench.js
//   BENCH_PANEL_RUNS=10000 BENCH_PANEL_WORKSTATIONS=100 BENCH_PANEL_SAMPLES=200
//   BENCH_PANEL_BACKENDS=pglite,postgres   (Postgres: RUNT_BENCH_POSTGRES_URL, a fresh database)
//   BENCH_PANEL_LOG_LINES=200 BENCH_PANEL_LOG_GAP_MS=20   (0 lines: no browser)
//   BENCH_PANEL_TRACE=1   (after each page: the statements that took its renders' time)
//
// The control plane runs in this process on PGlite (a data dir, the embedded default) or on a
// fresh database of the Postgres server. A render is timed from the request to the last byte of
// the answer over loopback (no browser), one request at a time. The log line latency is timed on
// one clock (the machine's, `performance.timeOrigin + performance.now()` in both processes):
// from just before the agent's event report (`POST /api/runs/:id/events`, the agent API) to the
// moment the line's text node is added to the page's log (a MutationObserver in the page).
/// <reference lib="dom" />
// page.evaluate bodies run in the browser.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { chromium } from 'playwright-core';
import { loadConfig, startControlPlane } from '@runt/control-plane';
import { ControlPlaneClient, type SubmitRunRequest } from '@runt/protocol';
import { countStatements, openDatabase, type Database } from '@runt/sql';
import { mintToken } from '@runt/transport-auth';
import { createBenchDatabase, type BenchDatabase } from './postgres-server.js';
import { loadAverage, nowMs, percentile, sleep } from './stats.js';
import { timeStatements } from './statement-times.js';

const env = (name: string, dflt: string) => process.env[name] ?? dflt;
const RUNS = Number(env('BENCH_PANEL_RUNS', '10000'));
const WORKSTATIONS = Number(env('BENCH_PANEL_WORKSTATIONS', '100'));
const SAMPLES = Number(env('BENCH_PANEL_SAMPLES', '200'));
const BACKENDS = env('BENCH_PANEL_BACKENDS', 'pglite,postgres')
  .split(',')
  .map((b) => b.trim())
  .filter(Boolean);
const LOG_LINES = Number(env('BENCH_PANEL_LOG_LINES', '200'));
const LOG_GAP_MS = Number(env('BENCH_PANEL_LOG_GAP_MS', '20'));
/** 1: after each page, the statement shapes that took the most time during its renders. */
const TRACE = env('BENCH_PANEL_TRACE', '0') === '1';
const CHROMIUM = process.env.RUNT_CHROMIUM ?? '/usr/bin/chromium';
/** The flags DEVELOPERS.md names for a headless Chromium (as the panel's tests use). */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
];

async function pairAndRegister(
  cp: { url: string },
  admin: ControlPlaneClient,
  name: string,
  runtimes: string[],
  labels: Record<string, string>,
): Promise<{ client: ControlPlaneClient; id: string }> {
  const { pairing } = await admin.mintPairingCode();
  const res = await fetch(`${cp.url}/api/workstations/pairing-codes/redeem`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ code: pairing.code, display_name: name }),
  });
  const { credential, workstation } = (await res.json()) as {
    credential: { token: string };
    workstation: { id: string };
  };
  const client = new ControlPlaneClient({ url: cp.url, token: credential.token, retries: 3 });
  await client.registerWorkstation({
    display_name: name,
    cpu_count: 8,
    runtimes,
    labels,
    agent_version: 'bench',
    listening: true,
  });
  return { client, id: workstation.id };
}

async function benchBackend(backend: string): Promise<void> {
  const adminToken = mintToken('admin');
  const dataDir = mkdtempSync(join(tmpdir(), 'runt-panel-bench-'));
  let pg: BenchDatabase | undefined;
  let raw: Database;
  if (backend === 'postgres') {
    pg = await createBenchDatabase('panel');
    raw = await openDatabase({ databaseUrl: pg.url });
  } else if (backend === 'pglite') raw = await openDatabase({ dataDir: join(dataDir, 'db') });
  else throw new Error(`BENCH_PANEL_BACKENDS: unknown backend ${backend} (pglite, postgres)`);
  let statements = 0;
  const timed = timeStatements(raw);
  const db = countStatements(timed.db, (c) => (statements += c.statements));
  const cp = await startControlPlane(
    loadConfig({}, { host: '127.0.0.1', port: 0, adminToken, dataDir, logLevel: 'error' }),
    { db, logDestination: new Writable({ write: (_c, _e, cb) => cb() }) },
  );
  try {
    const admin = new ControlPlaneClient({ url: cp.url, token: adminToken, retries: 3 });
    // The fleet: paired and registered (runtime `panel`, which nothing runs, so runs stay queued).
    for (let i = 0; i < WORKSTATIONS; i++)
      await pairAndRegister(cp, admin, `bench-${i}`, [i % 2 ? 'process' : 'docker'], { rack: `r${i % 10}` });
    const held = LOG_LINES > 0 ? await holdRun(cp, admin) : undefined;
    let lastRun = '';
    for (let done = 0; done < RUNS;) {
      const n = Math.min(100, RUNS - done);
      const runs: SubmitRunRequest[] = Array.from({ length: n }, (_, k) => ({
        runtime: 'panel',
        command: ['echo', String(done + k + 1)],
        env: { GREETING: 'hello', API_TOKEN: 'x' },
      }));
      const out = await admin.submitRuns({ runs });
      lastRun = out.runs[out.runs.length - 1]!.run.id;
      done += n;
    }
    const signIn = await fetch(`${cp.url}/sign-in`, {
      method: 'POST',
      redirect: 'manual',
      headers: { origin: cp.url, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: adminToken, next: '/workstations' }).toString(),
    });
    const cookie = signIn.headers.get('set-cookie')!.split(';')[0]!;
    const pages: Array<[string, string]> = [
      ['workstations', '/workstations'],
      ['add a workstation', '/workstations/new'],
      ['runs', '/runs'],
      ['runs (filtered)', '/runs?status=queued&workstation=bench-1'],
      ['a run', `/runs/${lastRun}`],
      ['submit a run', '/runs/new'],
    ];
    const load = loadAverage();
    for (const [name, path] of pages) {
      const samples: number[] = [];
      let html = '';
      for (let i = 0; i < SAMPLES + 10; i++) {
        timed.on = TRACE && i >= 10;
        const t0 = nowMs();
        const res = await fetch(`${cp.url}${path}`, { headers: { cookie } });
        html = await res.text();
        if (res.status !== 200) throw new Error(`${path}: ${res.status}`);
        if (i >= 10) samples.push(nowMs() - t0);
      }
      timed.on = false;
      // Statements one render sends (the fewest of 5: a scheduler pass may land in one).
      let fewest = Infinity;
      for (let i = 0; i < 5; i++) {
        const before = statements;
        await (await fetch(`${cp.url}${path}`, { headers: { cookie } })).arrayBuffer();
        fewest = Math.min(fewest, statements - before);
      }
      // First load: the document plus every stylesheet and script it names.
      const assets = [...html.matchAll(/(?:href|src)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!);
      let bytes = Buffer.byteLength(html);
      for (const a of new Set(assets))
        bytes += (await (await fetch(`${cp.url}${a}`)).arrayBuffer()).byteLength;
      console.log(
        `panel ${backend.padEnd(8)} ${name.padEnd(18)} render p50 ${percentile(samples, 50).toFixed(2)} ms p99 ${percentile(samples, 99).toFixed(2)} ms  ${fewest} statements  first load ${(bytes / 1024).toFixed(1)} KiB (uncompressed)  [${WORKSTATIONS} workstations, ${RUNS} runs, load ${load}]`,
      );
      // Statement time per render (queueing for the connection included), by shape: the page's
      // own statements and whatever else shared the database during its renders.
      for (const t of timed.top(TRACE ? 6 : 0))
        console.log(
          `    ${(t.totalMs / SAMPLES).toFixed(2).padStart(7)} ms/render  ${(t.count / SAMPLES).toFixed(2).padStart(6)}×/render  ${t.shape}`,
        );
      timed.reset();
    }
    if (held) await logLatency(backend, cp, held, cookie, timed);
  } finally {
    await cp.close();
    await db.close();
    await pg?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

interface HeldRun {
  agent: { client: ControlPlaneClient; id: string };
  run: { id: string };
  claim: { fencing_token: number; next_event_seq: number };
}

/**
 * The run the log is measured on, claimed and started by a workstation through the agent API.
 * Made before the 10,000 queued runs: a scheduler pass stops at the first page of the queue
 * when no workstation offers any of that page's runtimes, so a run behind them is not placed.
 */
async function holdRun(cp: { url: string }, admin: ControlPlaneClient): Promise<HeldRun> {
  const agent = await pairAndRegister(cp, admin, 'bench-log', ['panel-log'], {});
  const { run } = await admin.submitRun({
    runtime: 'panel-log',
    command: ['x'],
    placement: { workstation_id: agent.id },
  });
  for (let i = 0; ; i++) {
    const offered = await agent.client.offeredRuns(agent.id);
    if (offered.runs.some((r) => r.id === run.id)) break;
    if (i > 1200)
      throw new Error(`the log run was never offered: ${JSON.stringify((await admin.getRun(run.id)).run)}`);
    await sleep(50);
  }
  const claim = await agent.client.claimRun(run.id, { runner_id: 'bench', lease_ms: 600_000 });
  await agent.client.reportStatus(run.id, { fencing_token: claim.fencing_token, status: 'running' });

  return { agent, run, claim };
}

/**
 * A log line from the agent's report to the open run page: a workstation (the agent, through
 * the agent API an agent uses over HTTP) claims and starts a run, the run page is open in
 * Chromium, then LOG_LINES lines are reported one event each, LOG_GAP_MS apart.
 */
async function logLatency(
  backend: string,
  cp: { url: string },
  held: HeldRun,
  cookie: string,
  timed: ReturnType<typeof timeStatements>,
): Promise<void> {
  const { agent, run, claim } = held;
  const dir = mkdtempSync(join(tmpdir(), 'runt-panel-bench-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  try {
    const [name, value] = [cookie.slice(0, cookie.indexOf('=')), cookie.slice(cookie.indexOf('=') + 1)];
    await context.addCookies([{ name, value, url: cp.url }]);
    const page = context.pages()[0] ?? (await context.newPage());
    await page.goto(`${cp.url}/runs/${run.id}`);
    await page.waitForFunction(
      () => document.querySelector('[data-log-state]')?.textContent === 'Following the log…',
    );
    // The page notes when each line's text is added to the log (line `L<i> …`).
    await page.evaluate(() => {
      const seen: Record<string, number> = {};
      (window as unknown as { benchSeen: Record<string, number> }).benchSeen = seen;
      const out = document.querySelector('[data-log-output]')!;
      new MutationObserver((records) => {
        const t = performance.timeOrigin + performance.now();
        for (const r of records)
          for (const n of Array.from(r.addedNodes))
            for (const m of (n.textContent ?? '').matchAll(/L(\d+) /g)) seen[m[1]!] ??= t;
      }).observe(out, { childList: true });
    });
    const sent: number[] = [];
    const answered: number[] = [];
    let seq = claim.next_event_seq;
    const load = loadAverage();
    timed.on = TRACE;
    for (let i = 0; i < LOG_LINES; i++) {
      const t0 = nowMs();
      sent.push(t0);
      await agent.client.appendEvents(run.id, {
        fencing_token: claim.fencing_token,
        events: [
          { seq: seq++, type: 'log', payload: { stream: 'stdout', data: `L${i} ${'x'.repeat(60)}\n` } },
        ],
      });
      answered.push(nowMs() - t0);
      await sleep(LOG_GAP_MS);
    }
    await page.waitForFunction(
      (n) => Object.keys((window as unknown as { benchSeen: object }).benchSeen).length >= n,
      LOG_LINES,
      { timeout: 60_000 },
    );
    const seen = await page.evaluate(
      () => (window as unknown as { benchSeen: Record<string, number> }).benchSeen,
    );
    timed.on = false;
    const latency = sent.map((t, i) => seen[String(i)]! - t);
    console.log(
      `panel ${backend.padEnd(8)} log line → open run page  p50 ${percentile(latency, 50).toFixed(1)} ms p99 ${percentile(latency, 99).toFixed(1)} ms max ${Math.max(...latency).toFixed(1)} ms  (report answered p50 ${percentile(answered, 50).toFixed(1)} ms)  [${LOG_LINES} lines ${LOG_GAP_MS} ms apart, Chromium, load ${load}]`,
    );
    for (const t of timed.top(TRACE ? 8 : 0))
      console.log(
        `    ${(t.totalMs / LOG_LINES).toFixed(2).padStart(7)} ms/line  ${(t.count / LOG_LINES).toFixed(2).padStart(6)}×/line  ${t.shape}`,
      );
    timed.reset();
    await agent.client.reportStatus(run.id, {
      fencing_token: claim.fencing_token,
      status: 'completed',
      exit_code: 0,
    });
  } finally {
    await context.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  for (const backend of BACKENDS) await benchBackend(backend);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
