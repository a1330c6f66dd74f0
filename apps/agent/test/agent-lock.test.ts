import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { acquireAgentLock } from '../src/agent-lock.js';

const procState = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
};

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

  it('refuses while the owner runs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'runt-agent-lock-'));
    const owner = spawn('sleep', ['30'], { stdio: 'ignore' });
    started.push(owner.pid!);
    writeFileSync(join(dir, 'agent.lock'), `${owner.pid}\n`);
    expect(() => acquireAgentLock(dir)).toThrow(/another agent \(pid \d+\) is running/);
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
          expect(readFileSync(join(dir, 'agent.lock'), 'utf8').trim()).toBe(String(process.pid));
          release();
          resolve();
        } catch (e) {
          reject(e);
        }
      });
    });
  });
});
