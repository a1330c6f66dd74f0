import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RUNT_BIN, runt } from './cli.js';
import { eventually, startRunsHarness, type RunsHarness } from './runs-harness.js';

// Why a run is still queued, as the CLI shows it: `run show`, `run list`, `--json` and the
// stderr line `submit --follow` prints while it waits. The reasons themselves are tested in the
// control plane (pending-reason.test.ts); here, the path from the API to the user.
describe('pending reason in the CLI', () => {
  let h: RunsHarness;
  beforeAll(async () => {
    h = await startRunsHarness('pglite');
  }, 120_000);
  afterAll(async () => h?.close());

  it('run show, run list and --json say why a run on a runtime nobody offers stays queued', async () => {
    const submitted = await runt(['run', 'submit', '--runtime', 'nosuch', '--', 'true'], h.adminEnv);
    expect(submitted.exitCode, submitted.stderr).toBe(0);
    const id = submitted.stdout.trim();
    const show = await runt(['run', 'show', id], h.adminEnv);
    expect(show.exitCode, show.stderr).toBe(0);
    expect(show.stdout).toMatch(/^waiting\s+no workstation offers runtime "nosuch"/m);
    const json = await runt(['run', 'show', id, '--json'], h.adminEnv);
    expect(JSON.parse(json.stdout).run.pending_reason).toMatchObject({ code: 'no-runtime' });
    const list = await runt(['run', 'list', '--status', 'queued'], h.adminEnv);
    expect(list.stdout).toMatch(/WAITING/);
    expect(list.stdout.split('\n').find((l) => l.startsWith(id))).toContain(
      'no workstation offers runtime "nosuch"',
    );
  });

  it('submit --follow prints why the run waits while it is queued', async () => {
    let stderr = '';
    const cli = execa(
      'node',
      [RUNT_BIN, 'run', 'submit', '--runtime', 'nosuch', '--label', 'pool=zzz', '--follow', '--', 'true'],
      {
        env: { ...process.env, RUNT_CLOUD_TOKEN: undefined, ...h.adminEnv },
        extendEnv: false,
        reject: false,
        stdin: 'ignore',
      },
    );
    cli.stderr?.on('data', (c: Buffer) => (stderr += String(c)));
    try {
      const line = await eventually(
        async () => stderr.split('\n').find((l) => l.includes(' is queued: ')),
        'the waiting line',
        30_000,
      );
      expect(line).toMatch(/^runt: run run_\S+ is queued: no workstation offers runtime "nosuch"/);
    } finally {
      cli.kill('SIGTERM');
      await cli;
    }
  });
});
