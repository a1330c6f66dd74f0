import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { acquireAgentLock, processState } from '../src/agent-lock.js';

const procState = (pid: number) => processState(pid)?.state;

describe('acquireAgentLock', () => {
  const started: number[] = [];
  afterEach(() => {
    for (const pid of started.splice(0))
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
  });

  const sleeper = () => {
    const owner = spawn('sleep', ['30'], { stdio: 'ignore' });
    started.push(owner.pid!);
    return owner.pid!;
  };

  it('refuses while the owner runs (a lock of an older agent: the pid only)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'runt-agent-lock-'));
    const owner = sleeper();
    writeFileSync(join(dir, 'agent.lock'), `${owner}\n`);
    expect(() => acquireAgentLock(dir)).toThrow(/another agent \(pid \d+\) is running/);
  });

  it('records its pid and start time, and refuses while that owner runs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'runt-agent-lock-'));
    const release = acquireAgentLock(dir);
    const start = processState(process.pid)!.startTime;
    expect(Number.isInteger(start) && start > 0).toBe(true);
    expect(readFileSync(join(dir, 'agent.lock'), 'utf8')).toBe(`${process.pid} ${start}\n`);
    release();

    const owner = sleeper();
    writeFileSync(join(dir, 'agent.lock'), `${owner} ${processState(owner)!.startTime}\n`);
    expect(() => acquireAgentLock(dir)).toThrow(/another agent \(pid \d+\) is running/);
  });

  // A lock left by a dead agent whose pid now names another live process (pid reuse: after a
  // reboot, or a container restarted, the agent gets the same low pid again) is not a live owner.
  it('takes over a lock whose pid is alive but started at another time (a reused pid)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'runt-agent-lock-'));
    const owner = sleeper();
    const start = processState(owner)!.startTime;
    writeFileSync(join(dir, 'agent.lock'), `${owner} ${start - 1}\n`);
    const release = acquireAgentLock(dir);
    expect(readFileSync(join(dir, 'agent.lock'), 'utf8').split(' ')[0]).toBe(String(process.pid));
    release();
    expect(() => readFileSync(join(dir, 'agent.lock'))).toThrow(/ENOENT/);
  });

  // Chaos found it: a killed agent stays a zombie until its parent reaps it (PID 1 in a
  // container, ~2 s here); `kill(pid, 0)` answers for a zombie, so the restarted agent refused to
  // start, nobody restarted it, and its runs' leases lapsed — runner-lost for work that succeeded.
  it('takes over the lock of an owner killed but not yet reaped (a zombie)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'runt-agent-lock-'));
    // `sleep 30 &` is the owner; its parent then becomes `sleep 30` itself (exec), which never
    // waits, so the killed owner stays a zombie for as long as that parent lives.
    const parent = spawn('sh', ['-c', 'sleep 30 & echo $!; exec sleep 30'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    started.push(parent.pid!);
    return new Promise<void>((resolve, reject) => {
      parent.stdout.once('data', (b: Buffer) => {
        try {
          const owner = Number(b.toString().trim());
          started.push(owner);
          process.kill(owner, 'SIGKILL');
          const until = Date.now() + 5_000;
          while (procState(owner) !== 'Z' && Date.now() < until) execFileSync('sleep', ['0.01']);
          expect(procState(owner)).toBe('Z');
          writeFileSync(join(dir, 'agent.lock'), `${owner}\n`);
          const release = acquireAgentLock(dir);
          expect(readFileSync(join(dir, 'agent.lock'), 'utf8').split(' ')[0]).toBe(String(process.pid));
          release();
          resolve();
        } catch (e) {
          reject(e);
        }
      });
    });
  });
});
