import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runt } from './cli.js';
import { eventually, startRunsHarness, terminal, type RunsHarness } from './runs-harness.js';

// `runt run exec` waits for its command like `docker exec` (output, then its exit code), and
// `runt run logs --follow` exits with the run's exit code like `submit --follow` (issue 12).
describe('exit codes of run exec and run logs --follow', () => {
  let h: RunsHarness;
  beforeAll(async () => {
    h = await startRunsHarness('pglite');
    await h.startAgent('exec-a', ['--runtime', 'process', '--max-runs', '2']);
  }, 120_000);
  afterAll(async () => h?.close());

  it("run exec prints the command's output (not the run's) and exits with its exit code; --detach only queues", async () => {
    const { run } = await h.admin.submitRun({
      runtime: 'process',
      command: ['/bin/sh', '-c', 'echo up; while :; do echo tick; sleep 0.2; done'],
      ready_when: { log_line: 'up' },
    });
    await eventually(async () => (await h.admin.getRun(run.id)).run.status === 'running', 'running');
    const failed = await runt(
      ['run', 'exec', run.id, '--', '/bin/sh', '-c', 'echo from-exec; echo oops >&2; exit 4'],
      h.adminEnv,
    );
    expect(failed.exitCode, failed.stderr).toBe(4);
    expect(failed.stdout).toBe('from-exec');
    expect(failed.stderr).toContain('oops');
    expect(failed.stderr).toMatch(/runt: command \S+ failed: exited with code 4/);
    const ok = await runt(['run', 'exec', run.id, '--', '/bin/sh', '-c', 'echo fine'], h.adminEnv);
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.stdout).toBe('fine');
    const detached = await runt(
      ['run', 'exec', '--detach', run.id, '--', '/bin/sh', '-c', 'sleep 30'],
      h.adminEnv,
    );
    expect(detached.exitCode, detached.stderr).toBe(0);
    expect(detached.stdout.trim()).toMatch(/^\S+$/);
    const commands = (await h.admin.listCommands(run.id)).commands;
    expect(commands.find((c) => c.id === detached.stdout.trim())).toBeDefined();
    await h.admin.cancelRun(run.id);
    await terminal(h.admin, run.id);
  });

  it("run logs --follow exits with the run's exit code (0 when completed)", async () => {
    const { run: bad } = await h.admin.submitRun({
      runtime: 'process',
      command: ['/bin/sh', '-c', 'sleep 0.5; echo bye; exit 7'],
    });
    const followed = await runt(['run', 'logs', '--follow', bad.id], h.adminEnv);
    expect(followed.exitCode, followed.stderr).toBe(7);
    expect(followed.stdout).toBe('bye');
    expect(followed.stderr).toMatch(/runt: run \S+ failed \(nonzero-exit\)/);
    const { run: good } = await h.admin.submitRun({
      runtime: 'process',
      command: ['/bin/sh', '-c', 'echo ok'],
    });
    const ok = await runt(['run', 'logs', '--follow', good.id], h.adminEnv);
    expect(ok.exitCode, ok.stderr).toBe(0);
    // Without --follow it only prints, whatever the run's outcome.
    await terminal(h.admin, bad.id);
    const plain = await runt(['run', 'logs', bad.id], h.adminEnv);
    expect(plain.exitCode, plain.stderr).toBe(0);
  });
});
