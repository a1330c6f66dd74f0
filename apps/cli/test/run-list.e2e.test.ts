import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from '@lydell/node-pty';
import { RUNT_BIN, runt } from './cli.js';
import { startRunsHarness, terminal, type RunsHarness, type TestAgent } from './runs-harness.js';

/** The escape byte that starts every ANSI colour sequence. */
const ESC = '\u001b';

// `run list` names workstations as people do: the WORKSTATION column shows the name, and
// `--workstation` (and the admin commands' workstation argument) takes a name or an id (issue 12).
describe('run list and workstation names', () => {
  let h: RunsHarness;
  let agent: TestAgent;
  beforeAll(async () => {
    h = await startRunsHarness('pglite');
    agent = await h.startAgent('build-box', ['--runtime', 'process', '--max-runs', '2']);
  }, 300_000);
  afterAll(async () => h?.close());

  it('shows the workstation name and filters by name or id', async () => {
    const { run } = await h.admin.submitRun({ runtime: 'process', command: ['/bin/true'] });
    await terminal(h.admin, run.id);
    const { run: queued } = await h.admin.submitRun({ runtime: 'nosuch', command: ['/bin/true'] });

    const all = await runt(['run', 'list'], h.adminEnv);
    expect(all.exitCode, all.stderr).toBe(0);
    const head = all.stdout.split('\n')[0]!;
    expect(head).toMatch(/^ID\s+STATUS\s+RUNTIME\s+WORKSTATION\s/);
    const row = all.stdout.split('\n').find((l) => l.startsWith(run.id))!;
    expect(row.slice(head.indexOf('WORKSTATION')).split(/\s+/)[0]).toBe('build-box');
    // Times: relative in the table, ISO in --json.
    expect(row.slice(head.indexOf('CREATED'))).toMatch(/^\d+[smhd] ago/);
    const json = await runt(['run', 'list', '--json'], h.adminEnv);
    expect(JSON.parse(json.stdout).runs[0].created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/);

    for (const given of ['build-box', agent.workstationId]) {
      const mine = await runt(['run', 'list', '--workstation', given], h.adminEnv);
      expect(mine.exitCode, mine.stderr).toBe(0);
      expect(mine.stdout).toContain(run.id);
      expect(mine.stdout).not.toContain(queued.id);
    }
    const none = await runt(['run', 'list', '--workstation', 'no-such-box'], h.adminEnv);
    expect(none.exitCode).toBe(1);
    expect(none.stderr.trim()).toBe(
      'runt: no workstation named or with id no-such-box (runt workstation status lists them)',
    );
  }, 300_000);

  it('colours the status on a terminal only, and never with NO_COLOR', async () => {
    const { run } = await h.admin.submitRun({ runtime: 'process', command: ['/bin/sh', '-c', 'exit 3'] });
    await terminal(h.admin, run.id);
    const env = { ...(process.env as Record<string, string>) };
    delete env.NO_COLOR;
    delete env.FORCE_COLOR;
    const onPty = (extra: Record<string, string>) =>
      new Promise<string>((resolve) => {
        const pty = spawn('node', [RUNT_BIN, 'run', 'list'], {
          cols: 200,
          rows: 40,
          env: { ...env, ...h.adminEnv, TERM: 'xterm', ...extra },
        });
        let screen = '';
        pty.onData((d) => (screen += d));
        pty.onExit(() => resolve(screen));
      });
    expect(await onPty({})).toMatch(new RegExp(`${ESC}\\[31mfailed\\s*${ESC}\\[0m`));
    expect(await onPty({ NO_COLOR: '1' })).not.toContain(`${ESC}[`);
    const piped = await runt(['run', 'list'], h.adminEnv);
    expect(piped.stdout).toContain('failed');
    expect(piped.stdout).not.toContain('\u001b[');
  }, 300_000);

  // Last: the drain ends the agent (it finishes its runs and exits).
  it('run submit --workstation, admin drain and undrain take a name; run show names the workstation', async () => {
    const submitted = await runt(
      ['run', 'submit', '--runtime', 'process', '--workstation', 'build-box', '--', '/bin/true'],
      h.adminEnv,
    );
    expect(submitted.exitCode, submitted.stderr).toBe(0);
    const runId = submitted.stdout.trim();
    const done = await terminal(h.admin, runId);
    expect(done.workstation_id).toBe(agent.workstationId);
    const shown = await runt(['run', 'show', runId], h.adminEnv);
    expect(shown.stdout).toMatch(new RegExp(`^workstation\\s+build-box \\(${agent.workstationId}\\)$`, 'm'));

    const unknown = await runt(
      ['run', 'submit', '--runtime', 'process', '--workstation', 'no-such-box', '--', '/bin/true'],
      h.adminEnv,
    );
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr.trim()).toBe(
      'runt: no workstation named or with id no-such-box (runt workstation status lists them)',
    );

    const drained = await runt(['admin', 'drain', 'build-box'], h.adminEnv);
    expect(drained.exitCode, drained.stderr).toBe(0);
    expect(drained.stdout).toContain(`Draining ${agent.workstationId} (build-box)`);
    const undrained = await runt(['admin', 'undrain', agent.workstationId], h.adminEnv);
    expect(undrained.exitCode, undrained.stderr).toBe(0);
    expect(undrained.stdout).toContain(`Undrained ${agent.workstationId} (build-box)`);
  }, 300_000);
});
