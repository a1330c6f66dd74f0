import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, startControlPlane, type RunningControlPlane } from '@runt/control-plane';
import { ControlPlaneClient } from '@runt/protocol';
import { mintToken } from '@runt/transport-auth';
import { launchAgent, pairWithCli, statusOf } from './agent-lifecycle-harness.js';
import { allEvents, eventually, stdoutOf, terminal, type TestAgent } from './runs-harness.js';

// Link reconnection end to end: the control plane is stopped and a new one is started on the
// same port over the same embedded database (a PGlite data dir, reopened), while a real
// `runt workstation run` keeps going. The agent must come back on its own.

describe('agent link across a control-plane restart (pglite data dir)', () => {
  const root = mkdtempSync(join(tmpdir(), 'runt-restart-'));
  const adminToken = mintToken('admin');
  const adminEnv = { RUNT_ADMIN_TOKEN: adminToken };
  let cp: RunningControlPlane | undefined;
  let agent: TestAgent | undefined;
  let port = 0;

  const start = async () => {
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    cp = await startControlPlane(
      loadConfig(
        {},
        {
          host: '127.0.0.1',
          port,
          adminToken,
          dataDir: join(root, 'cp'),
          logLevel: 'warn',
          sweepIntervalMs: 200,
          schedulerTickMs: 200,
          offerTimeoutMs: 3_000,
          linkPingMs: 1_000,
        },
      ),
      { logDestination: sink },
    );
    port = cp.port;
    return new ControlPlaneClient({ url: cp.url, token: adminToken });
  };

  beforeAll(async () => {
    await start();
  }, 120_000);
  afterAll(async () => {
    agent?.cli.kill('SIGTERM');
    await agent?.cli;
    await cp?.close();
  });

  it('the agent reconnects to the restarted control plane, keeps its run and takes a new one', async () => {
    let admin = new ControlPlaneClient({ url: cp!.url, token: adminToken });
    const paired = await pairWithCli(cp!.url, { ...adminEnv, RUNT_CLOUD_URL: cp!.url }, root, 'restart-box');
    agent = await launchAgent(admin, 'restart-box', paired, ['--runtime', 'process', '--max-runs', '2']);
    const pinned = (command: string) => ({
      runtime: 'process',
      command: ['/bin/sh', '-c', command],
      placement: { workstation_id: paired.workstationId },
    });
    // A run that spans the restart.
    const { run: spanning } = await admin.submitRun(pinned('echo before; sleep 4; echo after'));
    await eventually(
      async () => (await stdoutOf(admin, spanning.id)).includes('before'),
      'the spanning run to start',
    );

    const url = cp!.url;
    await cp!.close();
    cp = undefined;
    admin = await start();
    expect(cp!.url).toBe(url);

    // Back online over a new link (this replica holds it), without restarting the agent.
    await eventually(async () => {
      const w = (await admin.listWorkstations()).workstations.find((x) => x.id === paired.workstationId);
      return w?.status === 'online' && w.listening && cp!.links.get(paired.workstationId) !== undefined;
    }, `the agent to reconnect (output: ${agent.output()})`);
    expect(agent.cli.exitCode).toBeNull();

    const { run } = await admin.submitRun(pinned('echo after-restart'));
    expect(await terminal(admin, run.id)).toMatchObject({
      status: 'completed',
      exit_code: 0,
      workstation_id: paired.workstationId,
      attempt: 1,
    });
    expect(await stdoutOf(admin, run.id)).toBe('after-restart\n');

    expect(await terminal(admin, spanning.id)).toMatchObject({
      status: 'completed',
      exit_code: 0,
      attempt: 1,
    });
    expect(await stdoutOf(admin, spanning.id)).toBe('before\nafter\n');
    const events = await allEvents(admin, spanning.id);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, j) => j + 1));
    expect(events.filter((e) => e.type === 'terminal_status')).toHaveLength(1);
    expect((await statusOf(admin, spanning.id)).failure_kind).toBeNull();
  });
});
