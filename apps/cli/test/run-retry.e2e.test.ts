import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunAttempt } from '@runt/protocol';
import { runt } from './cli.js';
import { startRunsHarness, type RunsHarness } from './runs-harness.js';

// Automatic retry end to end: a real `runt workstation run` on the process runtime, a workload
// that fails its first attempt (exit 3) and succeeds on the second. The run is retried by its
// policy on the same workstation, and every attempt keeps its exit code and its own output.
describe('run retry from the CLI', () => {
  let h: RunsHarness;
  beforeAll(async () => {
    h = await startRunsHarness('pglite');
    await h.startAgent('retry', ['--runtime', 'process', '--max-runs', '1']);
  }, 120_000);
  afterAll(async () => h?.close());

  it('submit --retry 3 --follow: attempt 1 exits 3, attempt 2 succeeds; run show and --json list both', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'runt-retry-'));
    const script = `if [ -e ${dir}/tried ]; then echo second try; exit 0; fi; touch ${dir}/tried; echo first try; exit 3`;
    const r = await runt(
      [
        'run',
        'submit',
        '--runtime',
        'process',
        '--retry',
        '3',
        '--retry-backoff',
        '0s',
        '--follow',
        '--',
        '/bin/sh',
        '-c',
        script,
      ],
      h.adminEnv,
    );
    expect(r.stderr).toContain('attempt 1 failed (exit code 3); retrying as attempt 2 of 3');
    expect(r.stdout).toBe('first try\nsecond try');
    expect(r.exitCode).toBe(0);
    const id = r.stderr.split('\n')[0]!.trim();

    const json = await runt(['run', 'show', id, '--json'], h.adminEnv);
    const { run } = JSON.parse(json.stdout) as {
      run: { status: string; attempt: number; attempts: RunAttempt[] };
    };
    expect(run).toMatchObject({ status: 'completed', attempt: 2 });
    expect(run.attempts.map((a) => [a.attempt, a.status, a.exit_code, a.failure_kind])).toEqual([
      [1, 'failed', 3, 'nonzero-exit'],
      [2, 'completed', 0, null],
    ]);

    const show = await runt(['run', 'show', id], h.adminEnv);
    expect(show.stdout).toMatch(/retry\s+on 3 \(backoff 0s/);
    expect(show.stdout).toMatch(/ATTEMPT\s+STATUS\s+EXIT\s+FAILURE/);
    expect(show.stdout).toMatch(/\n1\s+failed\s+3\s+nonzero-exit/);
    expect(show.stdout).toMatch(/\n2\s+completed\s+0\s+-/);

    // each attempt's own output
    expect((await runt(['run', 'logs', id, '--attempt', '1'], h.adminEnv)).stdout).toBe('first try');
    expect((await runt(['run', 'logs', id, '--attempt', '2'], h.adminEnv)).stdout).toBe('second try');
    const none = await runt(['run', 'logs', id, '--attempt', '3'], h.adminEnv);
    expect(none.exitCode).not.toBe(0);
    expect(none.stderr.trim()).toBe(`runt: run ${id} has no attempt 3 (it has 2)`);
  });

  it('a failure the policy does not name ends the run at once', async () => {
    const r = await runt(
      [
        'run',
        'submit',
        '--runtime',
        'process',
        '--retry',
        'timeout,3',
        '--follow',
        '--',
        '/bin/sh',
        '-c',
        'exit 4',
      ],
      h.adminEnv,
    );
    expect(r.exitCode).toBe(4);
    expect(r.stderr).not.toContain('retrying');
    const id = r.stderr.split('\n')[0]!.trim();
    const { run } = JSON.parse((await runt(['run', 'show', id, '--json'], h.adminEnv)).stdout) as {
      run: { attempt: number; attempts: RunAttempt[] };
    };
    expect(run.attempt).toBe(1);
    expect(run.attempts).toHaveLength(1);
  });

  it('refuses a retry it cannot read in one line', async () => {
    const bad = await runt(
      ['run', 'submit', '--runtime', 'process', '--retry', 'sometimes', '--', 'true'],
      h.adminEnv,
    );
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr.trim()).toBe(
      'runt: invalid --retry "sometimes": use nonzero-exit, runner-lost, timeout or a non-zero exit code',
    );
    const lonely = await runt(
      ['run', 'submit', '--runtime', 'process', '--retry-backoff', '5s', '--', 'true'],
      h.adminEnv,
    );
    expect(lonely.stderr.trim()).toBe('runt: --retry-backoff needs --retry (which failures to retry)');
  });
});
