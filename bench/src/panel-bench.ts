// Page speed of the web panel (issue 11): each page's render time with 100 workstations and
// 10,000 runs in the database, and the bytes of a first load (HTML + the assets it names).
//
//   node dist/panel-bench.js
//   BENCH_PANEL_RUNS=10000 BENCH_PANEL_WORKSTATIONS=100 BENCH_PANEL_SAMPLES=200
//
// The control plane runs in this process on an in-memory PGlite (the embedded default). A render
// is timed from the request to the last byte of the answer over loopback (no browser), one
// request at a time.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { loadConfig, startControlPlane } from '@runt/control-plane';
import { ControlPlaneClient } from '@runt/protocol';
import { openDatabase } from '@runt/sql';
import { mintToken } from '@runt/transport-auth';
import { loadAverage, nowMs, percentile } from './stats.js';

const env = (name: string, dflt: string) => process.env[name] ?? dflt;
const RUNS = Number(env('BENCH_PANEL_RUNS', '10000'));
const WORKSTATIONS = Number(env('BENCH_PANEL_WORKSTATIONS', '100'));
const SAMPLES = Number(env('BENCH_PANEL_SAMPLES', '200'));

async function main(): Promise<void> {
  const adminToken = mintToken('admin');
  const dataDir = mkdtempSync(join(tmpdir(), 'runt-panel-bench-'));
  const db = await openDatabase({ dataDir: join(dataDir, 'db') });
  const cp = await startControlPlane(
    loadConfig({}, { host: '127.0.0.1', port: 0, adminToken, dataDir, logLevel: 'error' }),
    { db, logDestination: new Writable({ write: (_c, _e, cb) => cb() }) },
  );
  try {
    const admin = new ControlPlaneClient({ url: cp.url, token: adminToken, retries: 3 });
    // The fleet: paired and registered (runtime `panel`, which nothing runs, so runs stay queued).
    for (let i = 0; i < WORKSTATIONS; i++) {
      const { pairing } = await admin.mintPairingCode();
      const res = await fetch(`${cp.url}/api/workstations/pairing-codes/redeem`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ code: pairing.code, display_name: `bench-${i}` }),
      });
      const { credential } = (await res.json()) as { credential: { token: string } };
      await new ControlPlaneClient({ url: cp.url, token: credential.token }).registerWorkstation({
        display_name: `bench-${i}`,
        cpu_count: 8,
        runtimes: [i % 2 ? 'process' : 'docker'],
        labels: { rack: `r${i % 10}` },
        agent_version: 'bench',
        listening: true,
      });
    }
    let next = 0;
    let lastRun = '';
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < RUNS) {
          next++;
          const { run } = await admin.submitRun({
            runtime: 'panel',
            command: ['echo', String(next)],
            env: { GREETING: 'hello', API_TOKEN: 'x' },
          });
          lastRun = run.id;
        }
      }),
    );
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
        const t0 = nowMs();
        const res = await fetch(`${cp.url}${path}`, { headers: { cookie } });
        html = await res.text();
        if (res.status !== 200) throw new Error(`${path}: ${res.status}`);
        if (i >= 10) samples.push(nowMs() - t0);
      }
      // First load: the document plus every stylesheet and script it names.
      const assets = [...html.matchAll(/(?:href|src)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!);
      let bytes = Buffer.byteLength(html);
      for (const a of new Set(assets))
        bytes += (await (await fetch(`${cp.url}${a}`)).arrayBuffer()).byteLength;
      console.log(
        `panel  ${name.padEnd(18)} render p50 ${percentile(samples, 50).toFixed(2)} ms p99 ${percentile(samples, 99).toFixed(2)} ms  first load ${(bytes / 1024).toFixed(1)} KiB (uncompressed)  [${WORKSTATIONS} workstations, ${RUNS} runs, load ${load}]`,
      );
    }
  } finally {
    await cp.close();
    await db.close();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
