import type { Run } from '@runt/protocol';
import { describe, expect, it } from 'vitest';
import { RunSlots, type SlotRun } from '../src/run-slots.js';
import { testLogger } from './control-plane.js';

/** A held run whose end the test controls. */
class HeldRun implements SlotRun {
  phase = 'running';
  woken = 0;
  cancelled: string | undefined;
  readonly done: Promise<void>;
  finish!: () => void;
  constructor(
    readonly runId: string,
    readonly fencingToken?: number,
  ) {
    this.done = new Promise((r) => (this.finish = r));
  }
  get holdsSlot() {
    return this.phase !== 'done' && this.phase !== 'dropped';
  }
  wakeCommands() {
    this.woken++;
  }
  cancel(message?: string) {
    this.cancelled = message;
  }
}

const runOf = (id: string) => ({ id }) as Run;
const tick = () => new Promise((r) => setTimeout(r, 0));

function slots(
  over: {
    maxRuns?: number;
    once?: boolean;
    claim?: (run: Run) => Promise<HeldRun | undefined>;
    /** The token a claim after a plain offer gets (none by default). */
    token?: number;
  } = {},
) {
  const accepted: string[] = [];
  const taking = new AbortController();
  const held = new Map<string, HeldRun>();
  const done: string[] = [];
  let freed = 0;
  const s = new RunSlots<HeldRun>({
    maxRuns: over.maxRuns ?? 2,
    once: over.once ?? false,
    taking: taking.signal,
    claim:
      over.claim ??
      (async (run) => {
        const h = new HeldRun(run.id, over.token);
        held.set(run.id, h);
        return h;
      }),
    accept: async (c) => {
      accepted.push(c.run.id);
      const h = new HeldRun(c.run.id, c.fencing_token);
      held.set(c.run.id, h);
      return h;
    },
    onDone: (e) => done.push(e.runId),
    onFreed: () => freed++,
    logger: testLogger().logger,
  });
  return { s, held, done, taking, accepted, freed: () => freed };
}

describe('RunSlots', () => {
  it('takes offers up to maxRuns, declines the rest, and frees a slot when a run is done', async () => {
    const { s, held, done } = slots();
    expect(await s.offer(runOf('a'))).toBe(true);
    expect(await s.offer(runOf('b'))).toBe(true);
    expect(s.hasCapacity()).toBe(false);
    expect(await s.offer(runOf('c'))).toBe(false);
    expect(s.ids).toEqual(['a', 'b']);
    held.get('a')!.phase = 'done';
    held.get('a')!.finish();
    await tick();
    expect(done).toEqual(['a']);
    expect(s.ids).toEqual(['b']);
    expect(s.hasCapacity()).toBe(true);
  });

  it('answers an offer of a run it holds or is claiming as taken, never handing it back (no churn)', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { s } = slots({ claim: async (run) => (await gate, new HeldRun(run.id)) });
    const first = s.offer(runOf('a'));
    expect(await s.offer(runOf('a'))).toBe(true); // re-sent while the claim is in flight
    release();
    expect(await first).toBe(true);
    expect(await s.offer(runOf('a'))).toBe(true); // re-sent once held
    expect(s.ids).toEqual(['a']);
  });

  it('takes a retried run offered again while its failed attempt still reports its end, once that is done', async () => {
    const { s, held } = slots({ maxRuns: 1 });
    await s.offer(runOf('a'));
    const first = held.get('a')!;
    first.phase = 'reporting'; // the control plane committed the retry; the answer is on its way
    const again = s.offer(runOf('a'));
    await tick();
    first.phase = 'done';
    first.finish();
    expect(await again).toBe(true);
    expect(held.get('a')).not.toBe(first);
    expect(s.ids).toEqual(['a']);
  });

  it('frees the slot of a run reporting its end, as the control plane does when it commits the report', async () => {
    const { s, held } = slots({ maxRuns: 1 });
    await s.offer(runOf('a'));
    expect(s.hasCapacity()).toBe(false);
    held.get('a')!.phase = 'reporting';
    expect(s.hasCapacity()).toBe(true);
    expect(await s.offer(runOf('b'))).toBe(true);
    expect(s.ids).toEqual(['a', 'b']);
    expect(await s.offer(runOf('c'))).toBe(false);
  });

  it('takes runs claimed on offer up to maxRuns, and hands back for good what it handed back once', async () => {
    const { s } = slots({ maxRuns: 1 });
    const claim = (id: string) => ({
      fencing_token: 1,
      expires_at: new Date().toISOString(),
      run: runOf(id),
      next_event_seq: 1,
      pending_commands: false,
    });
    expect(await s.accept(claim('a'))).toBe(true);
    expect(await s.accept(claim('a'))).toBe(true); // re-sent: already ours
    expect(await s.accept(claim('b'))).toBe(false); // no room: handed back
    expect(s.ids).toEqual(['a']);
    s.get('a')!.phase = 'reporting';
    // room again, but `b` was handed back: a re-sent offer of it that crossed the hand-back is
    // handed back again, never started
    expect(await s.accept(claim('b'))).toBe(false);
    expect(await s.accept(claim('c'))).toBe(true);
    expect(s.ids).toEqual(['a', 'c']);
  });

  // Chaos (issue 8, Postgres, 21:59): a run claimed after a plain offer (token 1) was re-sent,
  // with that token, as `offer-claimed` by a re-link's registration that read it as claimed and
  // not started while its reports were in flight; it arrived after the run had completed here,
  // and the agent started its workload a second time.
  it('never starts again a claim it already took through a plain offer, even once that run is done', async () => {
    const { s, held, accepted } = slots({ token: 1 });
    expect(await s.offer(runOf('a'))).toBe(true);
    held.get('a')!.phase = 'done';
    held.get('a')!.finish();
    await tick();
    expect(s.ids).toEqual([]);
    const resent = {
      fencing_token: 1,
      expires_at: new Date().toISOString(),
      run: runOf('a'),
      next_event_seq: 1,
      pending_commands: false,
    };
    expect(await s.accept(resent)).toBe(true); // the same attempt: taken already, nothing to hand back
    expect(accepted).toEqual([]);
    expect(s.ids).toEqual([]);
    // a new attempt (a retry: another token) is taken as usual
    expect(await s.accept({ ...resent, fencing_token: 2 })).toBe(true);
    expect(accepted).toEqual(['a']);
  });

  it('declines offers once it stops taking', async () => {
    const { s, taking } = slots({ maxRuns: 1 });
    taking.abort();
    expect(await s.offer(runOf('a'))).toBe(false);
    expect(s.hasCapacity()).toBe(false);
  });

  it('with once takes a single run, and may take another when that claim was refused', async () => {
    let refuse = true;
    const { s } = slots({ once: true, claim: async (run) => (refuse ? undefined : new HeldRun(run.id)) });
    expect(await s.offer(runOf('a'))).toBe(false);
    refuse = false;
    expect(await s.offer(runOf('b'))).toBe(true);
    expect(await s.offer(runOf('c'))).toBe(false);
  });

  it('keeps a command wake-up that arrives during the claim and hands it over', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const run = new HeldRun('a');
    const { s } = slots({ claim: async () => (await gate, run) });
    const taken = s.offer(runOf('a'));
    s.wakeCommands('a');
    s.wakeCommands('unknown'); // ignored
    release();
    expect(await taken).toBe(true);
    expect(run.woken).toBe(1);
    s.wakeCommands('a');
    expect(run.woken).toBe(2);
  });

  it('counts a claim that throws as not taken', async () => {
    const { s } = slots({ claim: () => Promise.reject(new Error('disk full')) });
    expect(await s.offer(runOf('a'))).toBe(false);
    expect(s.hasCapacity()).toBe(true);
  });
});
