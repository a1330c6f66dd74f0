import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { collectLogs } from '../conformance/index.js';
import { runInChildProcess } from '../conformance/reattach-child.js';
import { isRuntimeError } from '../errors.js';
import { createProcessRuntime, parseProcStat, readStartTime } from './index.js';

const stateDir = mkdtempSync(join(tmpdir(), 'runt-process-adapter-'));
const runtime = createProcessRuntime({ stateDir });
const builtModule = fileURLToPath(new URL('../../dist/process/index.js', import.meta.url));
const strangers: number[] = [];

afterAll(async () => {
  for (const instance of await runtime.list()) await runtime.remove(instance.id).catch(() => {});
  for (const pid of strangers) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

const mode = (path: string) => statSync(path).mode & 0o777;

describe('process runtime', () => {
  it('writes a 0600 pid file with the start time from /proc/<pid>/stat, in a 0700 instance dir', async () => {
    const inst = await runtime.create({ name: 'pidfile', command: ['/bin/sh', '-c', 'sleep 30'] });
    await runtime.start(inst.id);
    const dir = join(stateDir, inst.id);
    expect(mode(stateDir)).toBe(0o700);
    expect(mode(dir)).toBe(0o700);
    expect(mode(join(dir, 'pid'))).toBe(0o600);
    expect(mode(join(dir, 'instance.json'))).toBe(0o600);
    expect(mode(join(dir, 'stdout.log'))).toBe(0o600);
    const pidFile = JSON.parse(readFileSync(join(dir, 'pid'), 'utf8')) as { pid: number; startTime: string };
    const stat = readFileSync(`/proc/${pidFile.pid}/stat`, 'utf8');
    expect(pidFile.startTime).toBe(parseProcStat(stat)?.startTime);
    await runtime.stop(inst.id, { timeoutMs: 5000 });
  });

  it('never mistakes a reused pid for the instance: a pid file with a wrong start time means exited', async () => {
    const stranger = spawn('sleep', ['60'], { detached: true, stdio: 'ignore' });
    stranger.unref();
    const pid = stranger.pid as number;
    strangers.push(pid);
    const realStart = await readStartTime(pid);
    expect(realStart).toBeDefined();

    const inst = await runtime.create({ name: 'reused-pid', command: ['/bin/sh', '-c', 'exit 0'] });
    const pidPath = join(stateDir, inst.id, 'pid');
    // Control: with the stranger's real start time the file would claim it.
    writeFileSync(
      pidPath,
      JSON.stringify({ pid, startTime: realStart, startedAt: new Date().toISOString() }),
      { mode: 0o600 },
    );
    expect((await runtime.inspect(inst.id))?.state).toBe('running');

    writeFileSync(
      pidPath,
      JSON.stringify({ pid, startTime: `${realStart}1`, startedAt: new Date().toISOString() }),
      { mode: 0o600 },
    );
    expect((await runtime.inspect(inst.id))?.state).toBe('exited');
    await runtime.stop(inst.id, { timeoutMs: 100 });
    expect((await runtime.wait(inst.id)).exitCode).toBe(137);
    expect(await readStartTime(pid)).toBe(realStart); // the stranger was not signalled
  });

  it('keeps an orphan running after the process that started it exits; a new process finds and stops it', async () => {
    const options = { stateDir };
    const started = await runInChildProcess<{ id: string; state: string }>(
      { module: builtModule, exportName: 'createProcessRuntime', options },
      'create-start',
      {
        spec: {
          name: 'orphan',
          command: ['/bin/sh', '-c', 'echo orphan-up; sleep 60'],
          labels: { test: 'orphan' },
        },
      },
      30_000,
    );
    const fresh = createProcessRuntime({ stateDir });
    const found = await fresh.list({ labels: { test: 'orphan' } });
    expect(found.map((i) => [i.id, i.state])).toEqual([[started.id, 'running']]);
    await fresh.stop(started.id, { timeoutMs: 5000 });
    expect((await fresh.wait(started.id)).exitCode).toBe(143);
    expect((await collectLogs(fresh.logs(started.id))).stdout).toContain('orphan-up');
  });

  it('writes output to log files, not pipes, and appends on restart', async () => {
    const inst = await runtime.create({ name: 'restart', command: ['/bin/sh', '-c', 'echo run; exit 2'] });
    await runtime.start(inst.id);
    expect((await runtime.wait(inst.id)).exitCode).toBe(2);
    await runtime.start(inst.id);
    expect((await runtime.wait(inst.id)).exitCode).toBe(2);
    expect(readFileSync(join(stateDir, inst.id, 'stdout.log'), 'utf8')).toBe('run\nrun\n');
  });

  it('keeps host variables outside the allowlist away from workloads, and passes configPath', async () => {
    process.env.RUNT_TEST_HOST_SECRET = 'do-not-leak';
    try {
      const inst = await runtime.create({
        name: 'env-allowlist',
        command: ['/bin/sh', '-c', 'env'],
        configPath: '/etc/runt.json',
      });
      await runtime.start(inst.id);
      await runtime.wait(inst.id);
      const { stdout } = await collectLogs(runtime.logs(inst.id));
      expect(stdout).not.toContain('do-not-leak');
      expect(stdout).toContain('RUNT_CONFIG_PATH=/etc/runt.json');
      expect(stdout).toContain(`PATH=${process.env.PATH}`);
    } finally {
      delete process.env.RUNT_TEST_HOST_SECRET;
    }
  });

  it('rejects unsafe names, missing working directories and missing programs', async () => {
    for (const name of ['../escape', 'a/b', '', '.hidden']) {
      await expect(runtime.create({ name })).rejects.toSatisfy((e) => isRuntimeError(e, 'invalid-spec'));
    }
    await expect(runtime.create({ name: 'no-dir', workdir: join(stateDir, 'nope') })).rejects.toSatisfy((e) =>
      isRuntimeError(e, 'invalid-spec'),
    );
    const inst = await runtime.create({ name: 'no-program', command: ['runt-no-such-program-xyz'] });
    await expect(runtime.start(inst.id)).rejects.toSatisfy((e) => isRuntimeError(e, 'start-failed'));
    expect((await runtime.inspect(inst.id))?.state).toBe('created');
  });

  it('uses sourcePath as the working directory', async () => {
    const source = mkdtempSync(join(tmpdir(), 'runt-source-'));
    const inst = await runtime.create({
      name: 'source-path',
      sourcePath: source,
      command: ['/bin/sh', '-c', 'pwd'],
    });
    await runtime.start(inst.id);
    await runtime.wait(inst.id);
    expect((await collectLogs(runtime.logs(inst.id))).stdout).toBe(`${source}\n`);
  });

  describe('re-adoption ends in a known state within a bound (issue 8, defect 1)', () => {
    const pidOf = (id: string) =>
      (JSON.parse(readFileSync(join(stateDir, id, 'pid'), 'utf8')) as { pid: number }).pid;
    const within = <T>(promise: Promise<T>, ms: number): Promise<T> =>
      Promise.race([
        promise,
        new Promise<T>((_, reject) =>
          setTimeout(() => reject(new Error(`still waiting after ${ms} ms`)), ms),
        ),
      ]);

    it('the workload group was killed and the pid file removed: a fresh adapter reports it exited', async () => {
      const inst = await runtime.create({ name: 'readopt-gone', command: ['/bin/sh', '-c', 'sleep 30'] });
      await runtime.start(inst.id);
      // As in the chaos run: the workload has been running for a while when its group is killed.
      await expect.poll(() => existsSync(join(stateDir, inst.id, 'wrapper-pid'))).toBe(true);
      const pid = pidOf(inst.id);
      process.kill(-pid, 'SIGKILL');
      rmSync(join(stateDir, inst.id, 'pid'));
      const fresh = createProcessRuntime({ stateDir });
      const exit = await within(fresh.wait(inst.id), 15_000);
      expect(exit).toEqual({ exitCode: 137, signal: 'SIGKILL' });
      expect((await fresh.inspect(inst.id))?.state).toBe('exited');
    });

    it('the agent died before writing the pid file: a fresh adapter re-attaches and recovers the real exit code', async () => {
      const inst = await runtime.create({
        name: 'readopt-running',
        command: ['/bin/sh', '-c', 'sleep 1; exit 4'],
      });
      await runtime.start(inst.id);
      // The wrapper has written its own pid (what a fresh adapter finds it by); CI at 18af35f
      // inspected 16 ms after start, before it had, and saw the instance as exited.
      const wrapperPid = join(stateDir, inst.id, 'wrapper-pid');
      await expect
        .poll(() => (existsSync(wrapperPid) ? readFileSync(wrapperPid, 'utf8').trim() : ''))
        .toMatch(/^\d+$/);
      rmSync(join(stateDir, inst.id, 'pid'));
      const fresh = createProcessRuntime({ stateDir });
      expect((await fresh.inspect(inst.id))?.state).toBe('running');
      expect(await within(fresh.wait(inst.id), 15_000)).toEqual({ exitCode: 4 });
    });

    it('an instance that was never started: wait rejects with not-started instead of waiting forever', async () => {
      const inst = await runtime.create({ name: 'readopt-never', command: ['/bin/sh', '-c', 'exit 0'] });
      const fresh = createProcessRuntime({ stateDir });
      await expect(within(fresh.wait(inst.id), 30_000)).rejects.toSatisfy((e) =>
        isRuntimeError(e, 'not-started'),
      );
      expect((await fresh.inspect(inst.id))?.state).toBe('created');
    });

    it('the adapter that started a workload learns of its exit from the child exit event, not a poll', async () => {
      // Polls an hour apart: only the child's exit event can end this wait (and the follow) in time.
      const slow = createProcessRuntime({ stateDir, pollMs: 3_600_000, reattachPollMs: 3_600_000 });
      const inst = await slow.create({
        name: 'exit-event',
        command: ['/bin/sh', '-c', 'echo hi; sleep 0.3; exit 3'],
      });
      await slow.start(inst.id);
      const follow = collectLogs(slow.logs(inst.id, { follow: true }));
      expect(await within(slow.wait(inst.id), 20_000)).toEqual({ exitCode: 3 });
      expect((await within(follow, 20_000)).stdout).toBe('hi\n');
      expect((await slow.inspect(inst.id))?.state).toBe('exited');
    });

    it('stop in the adapter that started the workload returns when it exits, not at its next poll', async () => {
      const slow = createProcessRuntime({ stateDir, pollMs: 3_600_000, reattachPollMs: 3_600_000 });
      const inst = await slow.create({ name: 'stop-event', command: ['/bin/sh', '-c', 'echo up; sleep 30'] });
      await slow.start(inst.id);
      // Past the start window (no TERM resend), so only the exit event can end the stop early.
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      await within(slow.stop(inst.id, { timeoutMs: 60_000 }), 15_000);
      expect(await within(slow.wait(inst.id), 5_000)).toEqual({ exitCode: 143 });
    });

    it('a fresh adapter waiting on a workload it did not start wakes when the exit file is written', async () => {
      const inst = await runtime.create({
        name: 'exit-watch',
        command: ['/bin/sh', '-c', 'sleep 1; exit 6'],
      });
      await runtime.start(inst.id);
      // Its slow poll is an hour: the wait ends because fs.watch saw the wrapper write the code.
      const fresh = createProcessRuntime({ stateDir, pollMs: 3_600_000, reattachPollMs: 3_600_000 });
      expect(await within(fresh.wait(inst.id), 20_000)).toEqual({ exitCode: 6 });
    });

    it('a fresh adapter still ends its wait, within its slow poll, when the wrapper was killed outright', async () => {
      const inst = await runtime.create({ name: 'exit-killed', command: ['/bin/sh', '-c', 'sleep 30'] });
      await runtime.start(inst.id);
      await expect.poll(() => existsSync(join(stateDir, inst.id, 'wrapper-pid'))).toBe(true);
      const fresh = createProcessRuntime({ stateDir, reattachPollMs: 300 });
      const waiting = fresh.wait(inst.id);
      process.kill(-pidOf(inst.id), 'SIGKILL');
      expect(await within(waiting, 20_000)).toEqual({ exitCode: 137, signal: 'SIGKILL' });
    });
  });

  it('remove deletes the whole instance directory: its own files, and what the workload left in work/', async () => {
    const bare = await runtime.create({
      name: 'remove-bare',
      command: ['/bin/sh', '-c', 'echo out; echo err >&2'],
    });
    const busy = await runtime.create({
      name: 'remove-busy',
      command: ['/bin/sh', '-c', 'mkdir -p a/b && echo x > a/b/f && echo y > top && echo out'],
    });
    for (const inst of [bare, busy]) {
      await runtime.start(inst.id);
      expect(await runtime.wait(inst.id)).toEqual({ exitCode: 0 });
    }
    // A temp file of an interrupted atomic write is removed too.
    writeFileSync(join(stateDir, bare.id, 'pid.0badf00d.tmp'), '{}');
    expect(existsSync(join(stateDir, busy.id, 'work', 'a', 'b', 'f'))).toBe(true);
    for (const inst of [bare, busy]) {
      await runtime.remove(inst.id);
      expect(existsSync(join(stateDir, inst.id))).toBe(false);
      expect(await runtime.inspect(inst.id)).toBeUndefined();
    }
  });

  it('parses /proc/<pid>/stat even when the command name holds spaces and parentheses', () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
    fields[0] = 'S';
    const parsed = parseProcStat(`1234 (we(ird) name) ${fields.join(' ')}`);
    expect(parsed).toEqual({ state: 'S', startTime: '22' });
  });
});
