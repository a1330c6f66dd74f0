import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  agentStateDir,
  eventually,
  startTestControlPlane,
  testAgent,
  testLogger,
  type TestControlPlane,
} from './control-plane.js';

const AGENT_BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

let h: TestControlPlane;
beforeAll(async () => {
  h = await startTestControlPlane();
}, 120_000);
afterAll(async () => {
  await h?.close();
});

// `--prefetch`: a run waiting for a slot is claimed, its instance created and its id journaled,
// never started. An agent killed -9 then leaves the next one a journaled instance still
// `created`: it is re-adopted, the runtime's wait answers `not-started` after its start grace,
// and the run is handed back and runs once — never twice, never failed (process runtime, a real
// agent process killed -9).
describe('an agent killed while a run waits for a slot (--prefetch, process runtime)', () => {
  it('leaves the waiting run to the next agent, which hands it back; it runs once', async () => {
    const dir = agentStateDir('runt-prefetch-crash-');
    const marks = join(dir, 'ran');
    const child = spawn(
      process.execPath,
      [AGENT_BIN, '--runtime', 'process', '--max-runs', '1', '--prefetch', '1', '--state-dir', dir],
      {
        stdio: 'ignore',
        env: {
          ...process.env,
          RUNT_CLOUD_URL: h.url,
          RUNT_CLOUD_TOKEN: h.token,
          RUNT_CONFIG_DIR: dir,
          RUNT_LOG_LEVEL: 'warn',
        },
      },
    );
    const log = testLogger();
    let next: ReturnType<typeof testAgent> | undefined;
    let running: Promise<void> | undefined;
    try {
      const submit = async (script: string) =>
        (await h.admin.submitRun({ runtime: 'process', command: ['/bin/sh', '-c', script] })).run.id;
      const first = await submit('sleep 2');
      await eventually(async () => (await h.admin.getRun(first)).run.status === 'running', 'first running');
      const waiting = await submit(`echo ran >> ${marks}`);
      // journaled with its instance id, never started
      const journal = join(dir, 'agent', 'journal');
      await eventually(
        () =>
          existsSync(journal) &&
          readFileSync(journal, 'utf8')
            .split('\n')
            .some((l) => l.includes(`"run_id":"${waiting}"`) && l.includes('"instance_id"')),
        'the waiting run journaled with its instance id',
      );
      expect((await h.admin.getRun(waiting)).run.status).toBe('accepted');
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      expect(existsSync(marks)).toBe(false);

      next = testAgent({
        url: h.url,
        token: h.token,
        stateDir: dir,
        runtimes: ['process'],
        maxRuns: 1,
        prefetch: 1,
        linkJitter: { startMs: 0 },
        logger: log.logger,
      });
      running = next.run();
      const end = await eventually(
        async () => {
          const r = (await h.admin.getRun(waiting)).run;
          return r.status === 'completed' || r.status === 'failed' ? r : undefined;
        },
        'the waiting run ended',
        45_000,
      );
      expect(end).toMatchObject({ status: 'completed', exit_code: 0 });
      expect(readFileSync(marks, 'utf8')).toBe('ran\n'); // once
      expect(
        log.lines.some(
          (l) =>
            l.run_id === waiting &&
            l.msg === 're-adopted run was never started; handing it back to the queue',
        ),
      ).toBe(true);
      // the run that was running is re-adopted and reported
      await eventually(async () => {
        const s = (await h.admin.getRun(first)).run.status;
        return s === 'completed' || s === 'failed';
      }, 'the first run ended');
    } finally {
      child.kill('SIGKILL');
      await next?.shutdown({ graceMs: 0 });
      await running;
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
