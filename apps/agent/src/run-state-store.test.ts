import { mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RunStateStore, type RunState } from './run-state-store.js';

const state = (id: string): RunState => ({
  run_id: id,
  runtime: 'process',
  runner_id: 'ws_1/abc',
  fencing_token: 7,
  next_seq: 3,
  log_chars: { stdout: 10, stderr: 0 },
  ready: true,
  instance_id: 'inst-1',
  command_seq: 0,
});

describe('RunStateStore', () => {
  it('saves 0600 files in a 0700 directory, loads, lists and removes them', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'runt-state-')), 'runs');
    const store = new RunStateStore(dir);
    await store.save(state('run_a'));
    await store.save({ ...state('run_a'), next_seq: 9 });
    await store.save(state('run_b'));
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'run_a.json')).mode & 0o777).toBe(0o600);
    expect((await store.load('run_a'))?.next_seq).toBe(9);
    expect((await store.list()).map((s) => s.run_id).sort()).toEqual(['run_a', 'run_b']);
    await store.remove('run_a');
    await store.remove('run_a');
    expect((await store.list()).map((s) => s.run_id)).toEqual(['run_b']);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('drops corrupt files and refuses ids that are paths', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'runt-state-'));
    const store = new RunStateStore(dir);
    writeFileSync(join(dir, 'run_x.json'), '{not json');
    expect(await store.list()).toEqual([]);
    expect(readdirSync(dir)).toEqual([]);
    await expect(store.save(state('../evil'))).rejects.toThrow(/not a run id/);
  });
});
