#!/usr/bin/env node
// Start→exit latency of a trivial workload (`sh -c 'echo hi'`) through each adapter, next to
// the engine's own CLI (`docker run --rm`, `podman run --rm`) and a bare child_process.spawn.
// Uses the build (run `pnpm build` first). Engines come from scripts/setup-engines.sh.
//
//   pnpm bench                      # in packages/runtime-spi
//   BENCH_ITERATIONS=50 pnpm bench  # default 20 (max 200), plus 2 warm-up runs each
//   BENCH_ONLY=docker,podman pnpm bench
//
// Per adapter two numbers: "exit" = create → start → wait returns the exit code (what a caller
// waits for), and "exit+rm" = the same plus remove, which is what `run --rm` does; the ratio
// compares exit+rm with the engine CLI, and the process adapter's exit with the bare spawn.
// The rows run interleaved (one sample of each per round), so a change of load hits them alike.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

const dist = new URL('../dist/', import.meta.url);
if (!existsSync(new URL('docker/index.js', dist))) {
  console.error('bench: no build found; run `pnpm build` (or `npx tsup`) in packages/runtime-spi first');
  process.exit(1);
}
const { createDockerRuntime } = await import(new URL('docker/index.js', dist).href);
const { createPodmanRuntime } = await import(new URL('podman/index.js', dist).href);
const { createProcessRuntime } = await import(new URL('process/index.js', dist).href);
const { createFakeRuntime } = await import(new URL('fake/index.js', dist).href);

const N = Math.min(200, Math.max(1, Number(process.env.BENCH_ITERATIONS ?? 20)));
const WARMUP = 2;
const IMAGE = process.env.RUNT_TEST_IMAGE ?? 'runt-test/busybox:latest';
const SCRIPT = ['/bin/sh', '-c', 'echo hi'];
const only = process.env.BENCH_ONLY?.split(',').map((s) => s.trim());
const DOCKER_HOST =
  process.env.DOCKER_HOST ??
  (existsSync('/run/runt-docker/docker.sock')
    ? 'unix:///run/runt-docker/docker.sock'
    : 'unix:///var/run/docker.sock');

/** Runs a command to its exit; resolves with its exit code. */
function run(cmd, args, env = process.env) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
    let stderr = '';
    child.stderr.on('data', (b) => (stderr += b));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0
        ? resolve(code)
        : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr.trim()}`)),
    );
  });
}

function quantile(sorted, q) {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

function stats(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: quantile(sorted, 0.5), p95: quantile(sorted, 0.95) };
}

let counter = 0;
/** One create → start → wait (→ remove) through an adapter. */
function adapterOnce(runtime, spec) {
  return async () => {
    const t0 = performance.now();
    const created = await runtime.create({
      ...spec,
      name: `runt-bench-${process.pid}-${++counter}`,
      command: SCRIPT,
      labels: { 'runt.bench': String(process.pid) },
    });
    await runtime.start(created.id);
    const { exitCode } = await runtime.wait(created.id);
    const t1 = performance.now();
    await runtime.remove(created.id);
    const t2 = performance.now();
    if (exitCode !== 0) throw new Error(`${runtime.name}: workload exited ${exitCode}`);
    return { exit: t1 - t0, 'exit+rm': t2 - t0 };
  };
}

function cliOnce(cmd, args) {
  return async () => {
    const t0 = performance.now();
    await run(cmd, args);
    return performance.now() - t0;
  };
}

const results = [];
const benches = [];
/** Registers a bench; they run interleaved (one sample of each per round), so load changes hit every row alike. */
function bench(group, label, setup) {
  if (only && !only.includes(group)) return;
  benches.push({ group, label, setup });
}

async function engineAdapter(runtime) {
  const availability = await runtime.available();
  if (!availability.available)
    throw new Error(`unavailable: ${availability.reason} (run scripts/setup-engines.sh)`);
  await runtime.ensureImage(IMAGE);
  return { once: adapterOnce(runtime, { image: IMAGE }), cleanup: () => runtime.close() };
}

bench('spawn', 'child_process.spawn', async () => ({ once: cliOnce(SCRIPT[0], SCRIPT.slice(1)) }));
bench('docker', 'docker run --rm (CLI)', async () => ({
  once: cliOnce('docker', ['-H', DOCKER_HOST, 'run', '--rm', IMAGE, ...SCRIPT]),
}));
bench('docker', 'docker adapter', () => engineAdapter(createDockerRuntime({ host: DOCKER_HOST })));
bench('podman', 'podman run --rm (CLI)', async () => ({
  once: cliOnce('podman', ['run', '--rm', IMAGE, ...SCRIPT]),
}));
bench('podman', 'podman adapter', () => engineAdapter(createPodmanRuntime()));
bench('process', 'process adapter', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'runt-bench-process-'));
  const runtime = createProcessRuntime({ stateDir });
  return {
    once: adapterOnce(runtime, {}),
    cleanup: async () => (await runtime.close(), rmSync(stateDir, { recursive: true, force: true })),
  };
});
// The floor of the process adapter: its exit wrapper (a copy of EXIT_WRAPPER in
// src/process/runtime.ts) spawned detached with log files, as the adapter does, and nothing else.
const EXIT_WRAPPER =
  'trap : HUP INT TERM; w=$1; f=$2; shift 2; echo $$ > "$w"; "$@"; c=$?; echo "$c" > "$f"; exit "$c"';
bench('process', 'bare spawn of its wrapper', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'runt-bench-wrapper-'));
  let i = 0;
  return {
    once: async () => {
      const n = ++i;
      const out = openSync(join(dir, `out${n}`), 'a', 0o600);
      const t0 = performance.now();
      const child = spawn(
        '/bin/sh',
        ['-c', EXIT_WRAPPER, 'runt-process', join(dir, `w${n}`), join(dir, `e${n}`), ...SCRIPT],
        { detached: true, stdio: ['ignore', out, out] },
      );
      await new Promise((resolve) => child.once('exit', resolve));
      closeSync(out);
      return performance.now() - t0;
    },
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
});
bench('fake', 'fake adapter', async () => {
  const runtime = createFakeRuntime();
  return { once: adapterOnce(runtime, {}), cleanup: () => runtime.close() };
});

const live = [];
for (const b of benches) {
  try {
    live.push({ ...b, ...(await b.setup()), samples: [] });
  } catch (e) {
    results.push({ group: b.group, label: b.label, error: e.message.split('\n')[0] });
  }
}
for (let round = 0; round < WARMUP + N; round++) {
  for (const b of live) {
    if (b.error) continue;
    try {
      const sample = await b.once();
      if (round >= WARMUP) b.samples.push(sample);
    } catch (e) {
      b.error = e.message.split('\n')[0];
    }
  }
}
for (const b of live) {
  await b.cleanup?.();
  if (b.error) {
    results.push({ group: b.group, label: b.label, error: b.error });
    continue;
  }
  const keys = typeof b.samples[0] === 'number' ? ['total'] : Object.keys(b.samples[0]);
  results.push({
    group: b.group,
    label: b.label,
    ...Object.fromEntries(
      keys.map((k) => [k, stats(b.samples.map((s) => (typeof s === 'number' ? s : s[k])))]),
    ),
  });
}

const fmt = (ms) => (ms === undefined ? '' : `${ms.toFixed(1)}`.padStart(8));
const cliP50 = (group) => results.find((r) => r.group === group && r.label.includes('CLI'))?.total?.p50;
const spawnP50 = results.find((r) => r.group === 'spawn')?.total?.p50;
console.log(
  `start→exit of \`${SCRIPT.join(' ')}\`, ${N} runs each after ${WARMUP} warm-up, interleaved (ms); load average ${loadavg()[0].toFixed(1)}; docker: ${DOCKER_HOST}`,
);
console.log(
  `${'what'.padEnd(26)}${'p50'.padStart(8)}${'p95'.padStart(8)}  ${'exit+rm p50'.padStart(11)}${'p95'.padStart(8)}  vs CLI / spawn (p50)`,
);
for (const r of results) {
  if (r.error) {
    console.log(`${r.label.padEnd(26)}  ${r.error}`);
    continue;
  }
  const main = r.total ?? r.exit;
  const full = r['exit+rm'];
  // Engines: exit+rm against `run --rm`. process: start→exit against a bare spawn (issue 9's target).
  const base = r.group === 'process' ? spawnP50 : cliP50(r.group);
  const compared = r.group === 'process' ? (r.exit ?? r.total) : (full ?? r.total);
  const ratio =
    base && compared && !r.label.includes('CLI')
      ? `${(compared.p50 / base).toFixed(2)}x${r.group === 'process' ? ' spawn' : ''}`
      : '';
  console.log(
    `${r.label.padEnd(26)}${fmt(main.p50)}${fmt(main.p95)}  ${(full ? fmt(full.p50) : '').padStart(11)}${full ? fmt(full.p95) : ''.padStart(8)}  ${ratio}`,
  );
}
if (results.some((r) => r.error)) process.exitCode = 1;
