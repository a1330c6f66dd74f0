import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { RUNT_BIN } from './cli.js';
import { launchAgent } from './agent-lifecycle-harness.js';
import { alive, eventually, startRunsHarness, stdoutOf, terminal, type RunsHarness } from './runs-harness.js';

// Issue 8, defect 8: what a workload can see of its agent, and the agent's lifetime.
describe('agent isolation (pglite)', () => {
  let h: RunsHarness;
  beforeAll(async () => {
    h = await startRunsHarness('pglite');
  }, 120_000);
  afterAll(async () => h?.close());

  it("a process workload finds the token neither in its environment nor in its agent's /proc/<pid>/environ", async () => {
    const paired = await h.pair('iso-token');
    const agent = await launchAgent(h.admin, 'iso-token', paired, ['--runtime', 'process']);
    h.agents.push(agent);
    const script = [
      `echo "agent-environ:$(tr '\\0' '\\n' < /proc/${agent.agentPid}/environ | grep -c -e RUNT_CLOUD_TOKEN= -e rnt_ws_)"`,
      'echo "own-env:$(env | grep -c -e RUNT_CLOUD_TOKEN -e rnt_ws_)"',
    ].join('; ');
    const { run } = await h.admin.submitRun({
      runtime: 'process',
      command: ['/bin/sh', '-c', script],
      placement: { workstation_id: paired.workstationId },
    });
    expect(await terminal(h.admin, run.id)).toMatchObject({ status: 'completed' });
    expect(await stdoutOf(h.admin, run.id)).toBe('agent-environ:0\nown-env:0\n');
  });

  it('kill -9 of `runt workstation run` does not leave the agent orphaned', async () => {
    const paired = await h.pair('iso-orphan');
    const agent = await launchAgent(h.admin, 'iso-orphan', paired, ['--runtime', 'process']);
    h.agents.push(agent);
    expect(alive(agent.agentPid)).toBe(true);
    agent.cli.kill('SIGKILL');
    await agent.cli;
    await eventually(async () => !alive(agent.agentPid), 'the agent to exit after its parent died', 30_000);
  });

  it('a second agent for the same workstation refuses to start, with one line', async () => {
    const paired = await h.pair('iso-twice');
    const first = await launchAgent(h.admin, 'iso-twice', paired, ['--runtime', 'process']);
    h.agents.push(first);
    const second = await execa('node', [RUNT_BIN, 'workstation', 'run', '--runtime', 'process'], {
      env: {
        ...process.env,
        RUNT_CLOUD_URL: undefined,
        RUNT_CLOUD_TOKEN: undefined,
        RUNT_STATE_DIR: undefined,
        RUNT_CONFIG_DIR: paired.configDir,
      },
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
      timeout: 60_000,
    });
    expect(second.exitCode).toBe(1);
    expect(second.stderr.trim().split('\n')).toHaveLength(1);
    expect(second.stderr).toMatch(
      new RegExp(`^runt-agent: another agent \\(pid ${first.agentPid}\\) is running`),
    );
    expect(alive(first.agentPid)).toBe(true);
  });
});
