import { spawn } from 'node:child_process';
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { RunStateStore, type RunState } from './run-state-store.js';

const state = (id: string, over: Partial<RunState> = {}): RunState => ({
  run_id: id,
  runtime: 'process',
  runner_id: 'ws_1/abc',
  fencing_token: 7,
  next_seq: 3,
  log_chars: { stdout: 10, stderr: 0 },
  ready: true,
  instance_id: 'inst-1',
  command_seq: 0,
  ...over,
});

const journalIn = () => join(mkdtempSync(join(tmpdir(), 'runt-journal-')), 'agent', 'journal');
const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean);
const ids = async (store: RunStateStore) => (await store.list()).map((s) => s.run_id).sort();

describe('RunStateStore (one journal per agent)', () => {
  it('appends records to one 0600 file in a 0700 directory; a new store replays them', async () => {
    const file = journalIn();
    const store = new RunStateStore(file);
    await store.save(state('run_a'));
    await store.save(state('run_a', { next_seq: 9 }));
    await store.save(state('run_b'));
    expect(statSync(join(file, '..')).mode & 0o777).toBe(0o700);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect((await store.load('run_a'))?.next_seq).toBe(9);
    expect(await ids(store)).toEqual(['run_a', 'run_b']);
    await store.remove('run_a');
    await store.remove('run_a');
    expect(await ids(store)).toEqual(['run_b']);
    await store.close();
    // Appended, not rewritten: put a, put a, put b, del a (written by close at the latest).
    expect(lines(file)).toHaveLength(4);

    const again = new RunStateStore(file);
    expect(await again.list()).toEqual([state('run_b')]);
    expect(await again.load('run_a')).toBeUndefined();
    // Opening compacts: only the live state is left.
    expect(lines(file)).toHaveLength(1);
    await again.close();
    expect(readdirSync(join(file, '..'))).toEqual(['journal']);
  });

  it('groups the saves of a window into one write: one record per run, the latest state', async () => {
    const file = journalIn();
    const store = new RunStateStore(file, { windowMs: 20 });
    await store.list(); // opened
    const saves = [];
    for (let i = 0; i < 50; i++) saves.push(store.save(state(`run_${i % 10}`, { next_seq: i + 1 })));
    saves.push(store.remove('run_9'));
    await Promise.all(saves);
    expect(store.stats).toMatchObject({ batches: 1, records: 10 });
    expect(lines(file)).toHaveLength(10);
    await store.close();
    const again = new RunStateStore(file);
    const states = await again.list();
    expect(states.map((s) => s.run_id).sort()).toEqual([...Array(9).keys()].map((i) => `run_${i}`));
    expect(states.find((s) => s.run_id === 'run_3')?.next_seq).toBe(44);
    await again.close();
  });

  it('with windowMs 0 writes the saves of one turn at the end of it, in one synced batch, without a timer (issue 9)', async () => {
    const file = journalIn();
    const store = new RunStateStore(file, { windowMs: 0 });
    await store.list(); // opened
    // No timer fires: a save that waited for one (a window of milliseconds) never resolves.
    vi.useFakeTimers({ toFake: ['setTimeout', 'setInterval'] });
    try {
      const saves = [];
      for (let i = 0; i < 25; i++) saves.push(store.save(state(`run_${i}`)));
      await Promise.all(saves);
      expect(store.stats).toMatchObject({ batches: 1, records: 25, syncs: 1 });
    } finally {
      vi.useRealTimers();
    }
    await store.close();
  }, 10_000);

  it('by default writes the 25 saves of one offer message (one turn) in one synced batch, without waiting for a timer (issue 9)', async () => {
    const file = journalIn();
    const store = new RunStateStore(file);
    await store.list(); // opened
    vi.useFakeTimers({ toFake: ['setTimeout', 'setInterval'] });
    const saves = [];
    let timers: number;
    try {
      for (let i = 0; i < 25; i++) saves.push(store.save(state(`run_${i}`)));
      // A window of milliseconds is a timer the batch waits for (armed once the saves ran): none.
      await new Promise((r) => setImmediate(r));
      timers = vi.getTimerCount();
      vi.runOnlyPendingTimers(); // (so that a red run fails here instead of hanging)
    } finally {
      vi.useRealTimers();
    }
    await Promise.all(saves);
    expect(timers).toBe(0);
    expect(store.stats).toMatchObject({ batches: 1, records: 25, syncs: 1 });
    await store.close();
  }, 10_000);

  it('syncs only for durable saves: removals and notes ride with the next synced batch, or go out unsynced after lazyMs', async () => {
    const file = journalIn();
    const store = new RunStateStore(file, { windowMs: 1, lazyMs: 60_000 });
    await store.save(state('run_a'));
    expect(store.stats).toMatchObject({ batches: 1, syncs: 1 });
    await store.remove('run_a');
    await store.note(state('run_b', { next_seq: 7 }));
    // Answered at once from memory; nothing written for them yet.
    expect(await ids(store)).toEqual(['run_b']);
    await new Promise((r) => setTimeout(r, 30));
    expect(lines(file)).toHaveLength(1);
    // The next durable save carries them: one write, one fsync.
    await store.save(state('run_c'));
    expect(store.stats).toMatchObject({ batches: 2, records: 4, syncs: 2 });
    expect(lines(file)).toHaveLength(4);
    await store.close();

    const lazy = new RunStateStore(file, { windowMs: 1, lazyMs: 20 });
    expect(await ids(lazy)).toEqual(['run_b', 'run_c']);
    expect((await lazy.load('run_b'))?.next_seq).toBe(7);
    await lazy.remove('run_b');
    for (let i = 0; i < 100 && lazy.stats.batches < 1; i++) await new Promise((r) => setTimeout(r, 10));
    // Written alone after lazyMs, without an fsync.
    expect(lines(file)).toHaveLength(3);
    expect(lazy.stats).toMatchObject({ batches: 1, syncs: 0 });
    await lazy.close();
    const third = new RunStateStore(file);
    expect(await ids(third)).toEqual(['run_c']);
    await third.close();
  });

  it('tolerates a torn last record and a corrupt one, and appends after them on a clean line', async () => {
    const file = journalIn();
    const store = new RunStateStore(file);
    await store.save(state('run_a'));
    await store.save(state('run_b'));
    await store.close();
    const [, second] = lines(file);
    // A record whose CRC does not match (a bit flipped) and a record cut in the middle.
    writeFileSync(file, `${lines(file)[0]!.replace('"ready":true', '"ready":fals')}\n${second}\n`);
    appendFileSync(file, second!.slice(0, 40));

    const again = new RunStateStore(file);
    expect(await ids(again)).toEqual(['run_b']);
    await again.save(state('run_c'));
    await again.close();
    expect(lines(file)).toHaveLength(2);
    const third = new RunStateStore(file);
    expect(await ids(third)).toEqual(['run_b', 'run_c']);
    await third.close();
  });

  it('compacts by writing a new file and renaming it once the journal has grown', async () => {
    const file = journalIn();
    const store = new RunStateStore(file, { compactBytes: 4096, windowMs: 0 });
    for (let i = 0; i < 200; i++) await store.save(state(`run_${i % 3}`, { next_seq: i + 1 }));
    expect(store.stats.rewrites).toBeGreaterThan(5);
    expect(statSync(file).size).toBeLessThan(4096 + 1024);
    expect(readdirSync(join(file, '..'))).toEqual(['journal']);
    await store.close();
    const again = new RunStateStore(file);
    expect((await again.list()).map((s) => [s.run_id, s.next_seq]).sort()).toEqual([
      ['run_0', 199],
      ['run_1', 200],
      ['run_2', 198],
    ]);
    await again.close();
  });

  it('takes over the per-run state files of an older agent, then removes them', async () => {
    const root = mkdtempSync(join(tmpdir(), 'runt-journal-'));
    const legacyDir = join(root, 'agent', 'runs');
    mkdirSync(legacyDir, { recursive: true });
    writeFileSync(join(legacyDir, 'run_old.json'), JSON.stringify(state('run_old')));
    writeFileSync(join(legacyDir, 'run_bad.json'), '{not json');
    const store = new RunStateStore(join(root, 'agent', 'journal'), { legacyDir });
    expect(await store.list()).toEqual([state('run_old')]);
    expect(existsSync(legacyDir)).toBe(false);
    await store.close();
    expect(await new RunStateStore(join(root, 'agent', 'journal')).list()).toEqual([state('run_old')]);
  });

  it('refuses ids that are paths', async () => {
    const store = new RunStateStore(journalIn());
    await expect(store.save(state('../evil'))).rejects.toThrow(/not a run id/);
    await expect(store.remove('a/b')).rejects.toThrow(/not a run id/);
  });

  it('keeps every acknowledged save of a process killed with SIGKILL while it writes', async () => {
    // A real process saving as fast as it can (the built store), killed -9 mid-stream.
    const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    expect(existsSync(dist), 'run `pnpm build` in apps/agent first').toBe(true);
    const file = journalIn();
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `
        const { RunStateStore } = await import(${JSON.stringify(dist)});
        const store = new RunStateStore(${JSON.stringify(file)}, { compactBytes: 64 * 1024 });
        for (let i = 1; ; i++) {
          const batch = [];
          for (let r = 0; r < 8; r++)
            batch.push(store.save({ run_id: 'run_' + r, runtime: 'process', runner_id: 'w', fencing_token: 1,
              next_seq: i, log_chars: { stdout: i * 100, stderr: 0 }, ready: true, instance_id: 'x'.repeat(300), command_seq: 0 }));
          if (i % 5 === 0) batch.push(store.remove('run_7'));
          await Promise.all(batch);
          process.stdout.write(i + '\\n');
        }`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let acked = 0;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      const last = d.trim().split('\n').at(-1);
      if (last) acked = Number(last);
    });
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (acked >= 300) {
          clearInterval(check);
          resolve();
        }
      }, 5);
    });
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));

    const store = new RunStateStore(file);
    const states = await store.list();
    // Every run saved in an acknowledged round is there, at that round or a later one.
    for (let r = 0; r < 7; r++) {
      const s = states.find((x) => x.run_id === `run_${r}`);
      expect(s?.next_seq).toBeGreaterThanOrEqual(acked);
      expect(s?.log_chars.stdout).toBe(s!.next_seq * 100);
    }
    await store.close();
  });
});
