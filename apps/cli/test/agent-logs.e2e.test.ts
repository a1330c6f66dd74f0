import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { spawn } from '@lydell/node-pty';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, startControlPlane, type RunningControlPlane } from '@runt/control-plane';
import { ControlPlaneClient } from '@runt/protocol';
import { mintToken } from '@runt/transport-auth';
import { RUNT_BIN } from './cli.js';
import { launchAgent, pairWithCli, type Paired } from './agent-lifecycle-harness.js';
import { eventually, type TestAgent } from './runs-harness.js';

/** The escape byte that starts every ANSI colour sequence. */
const ESC = '\u001b';
/** A pretty line: time, level, message. */
const PRETTY = /^\d\d:\d\d:\d\d (TRACE|DEBUG|INFO |WARN |ERROR|FATAL) \S/;

// The agent's terminal output (issue 12): pretty lines a person reads on a terminal (or with
// --log-format pretty), JSON when piped; while the control plane is down, one line when it goes
// and one when it is back, never a stack trace per retry. A real `runt workstation run` against a
// real control plane that is stopped and started again on the same port and data dir.
describe('agent terminal output', () => {
  const root = mkdtempSync(join(tmpdir(), 'runt-agent-logs-'));
  const adminToken = mintToken('admin');
  let cp: RunningControlPlane | undefined;
  let port = 0;
  let paired: Paired;
  let agent: TestAgent | undefined;

  const start = async () => {
    cp = await startControlPlane(
      loadConfig(
        {},
        {
          host: '127.0.0.1',
          port,
          adminToken,
          dataDir: join(root, 'cp'),
          logLevel: 'warn',
          schedulerTickMs: 200,
          linkPingMs: 1_000,
        },
      ),
      { logDestination: new Writable({ write: (_c, _e, cb) => cb() }) },
    );
    port = cp.port;
    return new ControlPlaneClient({ url: cp.url, token: adminToken });
  };

  beforeAll(async () => {
    await start();
    paired = await pairWithCli(
      cp!.url,
      { RUNT_ADMIN_TOKEN: adminToken, RUNT_CLOUD_URL: cp!.url },
      root,
      'logs-box',
    );
  }, 300_000);
  afterAll(async () => {
    agent?.cli.kill('SIGTERM');
    await agent?.cli;
    await cp?.close();
  });

  it('says once that the control plane is unreachable and once that it is back, in pretty lines', async () => {
    let admin = new ControlPlaneClient({ url: cp!.url, token: adminToken });
    // Polling every 200 ms: the outage below is dozens of failed polls, link attempts and heartbeats.
    agent = await launchAgent(
      admin,
      'logs-box',
      paired,
      ['--runtime', 'process', '--log-format', 'pretty', '--poll-interval-ms', '200'],
      { timeoutMs: 180_000 },
    );
    const before = agent.output().length;

    await cp!.close();
    cp = undefined;
    const outage = () => agent!.output().slice(before);
    await eventually(async () => outage().includes('control plane unreachable'), 'the outage line', 180_000);
    // Long enough for many retries of every loop (polls back off from 200 ms).
    await new Promise((r) => setTimeout(r, 6_000));
    admin = await start();
    await eventually(
      async () => outage().includes('reconnected after'),
      `the reconnect line (${outage()})`,
      180_000,
    );
    await eventually(
      async () => {
        const w = (await admin.listWorkstations()).workstations.find((x) => x.id === paired.workstationId);
        return w?.status === 'online';
      },
      'the workstation online again',
      180_000,
    );
    await new Promise((r) => setTimeout(r, 1_000));

    const lines = outage()
      .split('\n')
      .filter((l) => l.trim() !== '');
    const report = lines.join('\n');
    for (const line of lines) expect(line, report).toMatch(PRETTY);
    const url = `http://127.0.0.1:${port}`;
    const down = lines.filter((l) => l.includes('control plane unreachable'));
    expect(down, report).toHaveLength(1);
    expect(down[0], report).toMatch(
      new RegExp(`WARN  control plane unreachable at ${url.replace(/\./g, '\\.')}: [A-Z]+; retrying$`),
    );
    const back = lines.filter((l) => l.includes('reconnected after'));
    expect(back, report).toHaveLength(1);
    expect(back[0], report).toMatch(/INFO {2}reconnected after \d+s down_ms=\d+$/);
    // Nothing else above info, nothing per retry: at most a few lines in all.
    expect(
      lines.filter((l) => /(WARN |ERROR|FATAL)/.test(l.slice(9, 14))),
      report,
    ).toHaveLength(1);
    expect(lines.length, report).toBeLessThanOrEqual(4);
    expect(report).not.toMatch(/^\s+at /m);
    expect(report).not.toContain(ESC); // piped: no colour
    expect(agent.output()).not.toContain(paired.token.slice('rnt_ws_'.length));

    agent.cli.kill('SIGTERM');
    await agent.cli;
    agent = undefined;
  }, 600_000);

  it('is JSON when piped, pretty and coloured on a terminal, plain with NO_COLOR', async () => {
    const admin = new ControlPlaneClient({ url: cp!.url, token: adminToken });
    // Piped, no flag: JSON lines (what log shippers and the other tests read).
    agent = await launchAgent(admin, 'logs-box', paired, ['--runtime', 'process'], { timeoutMs: 180_000 });
    const first = agent
      .output()
      .split('\n')
      .find((l) => l.includes('agent running'))!;
    expect(JSON.parse(first)).toMatchObject({ level: 30, msg: 'agent running', service: 'runt-agent' });
    agent.cli.kill('SIGTERM');
    await agent.cli;
    agent = undefined;

    const onPty = (args: string[], extra: Record<string, string>) =>
      new Promise<string>((resolve, reject) => {
        const env: Record<string, string> = {};
        for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
        delete env.NO_COLOR;
        delete env.RUNT_LOG_FORMAT;
        const pty = spawn('node', [RUNT_BIN, 'workstation', 'run', '--runtime', 'process', ...args], {
          cols: 300,
          rows: 40,
          env: { ...env, RUNT_CONFIG_DIR: paired.configDir, TERM: 'xterm', ...extra },
        });
        let screen = '';
        let stopping = false;
        pty.onData((d) => {
          screen += d;
          if (!stopping && screen.includes('agent running')) {
            stopping = true;
            pty.kill('SIGTERM');
          }
        });
        pty.onExit(() => resolve(screen));
        setTimeout(() => reject(new Error(`no "agent running" on the terminal: ${screen}`)), 180_000).unref();
      });
    const coloured = await onPty([], {});
    expect(coloured).toContain(`${ESC}[`);
    expect(coloured).toMatch(new RegExp(`${ESC}\\[36mINFO.*agent running`));
    expect(coloured).not.toContain('{"level"');
    const plain = await onPty([], { NO_COLOR: '1' });
    expect(plain).not.toContain(`${ESC}[`);
    const running = plain.split(/\r?\n/).find((l) => l.includes('agent running'))!;
    expect(running).toMatch(PRETTY);
    expect(running).toMatch(
      /INFO {2}agent running workstation_id=\S+ runtimes=process max_runs=1 link=true$/,
    );
    const json = await onPty(['--log-format', 'json'], {});
    expect(json).toContain('{"level":30');
    expect(json).not.toContain(`${ESC}[`);
    for (const out of [coloured, plain, json])
      expect(out).not.toContain(paired.token.slice('rnt_ws_'.length));
  }, 600_000);
});
