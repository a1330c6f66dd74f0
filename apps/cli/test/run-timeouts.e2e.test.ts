import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runt } from './cli.js';
import { startRunsHarness, type RunsHarness } from './runs-harness.js';

// The agent enforces a run's timeout_s against the workload: a real `runt workstation run` on
// the process runtime stops a run past `--timeout` (TERM, then KILL) and reports it failed with
// failure kind timeout; `--timeout` takes durations like 2s or 10m. The control plane's backstop
// and the queue timeout are tested in the control plane (run-timeouts.test.ts).
describe('run timeouts from the CLI', () => {
  let h: RunsHarness;
  beforeAll(async () => {
    h = await startRunsHarness('pglite');
    await h.startAgent('timeouts', ['--runtime', 'process', '--max-runs', '2']);
  }, 120_000);
  afterAll(async () => h?.close());

  it('submit --timeout 2s --follow: the agent stops the workload and the run fails with timeout', async () => {
    const started = Date.now();
    const r = await runt(
      [
        'run',
        'submit',
        '--runtime',
        'process',
        '--timeout',
        '2s',
        '--follow',
        '--',
        '/bin/sh',
        '-c',
        'echo started; sleep 120',
      ],
      h.adminEnv,
    );
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(r.stdout).toContain('started');
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/runt: run (run_\S+) failed \(timeout\): exceeded its timeout of 2s/);
    const id = /runt: run (run_\S+) failed/.exec(r.stderr)![1]!;
    const show = await runt(['run', 'show', id, '--json'], h.adminEnv);
    expect(JSON.parse(show.stdout).run).toMatchObject({
      status: 'failed',
      failure_kind: 'timeout',
      failure_message: 'exceeded its timeout of 2s',
      timeout_s: 2,
    });
  });

  it('refuses a duration it cannot read in one line', async () => {
    const r = await runt(
      ['run', 'submit', '--runtime', 'process', '--timeout', 'ten minutes', '--', 'true'],
      h.adminEnv,
    );
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr.trim()).toBe(
      'runt: invalid --timeout "ten minutes": use a duration such as 90s, 10m, 2h or 1h30m',
    );
  });
});
