import type { Logger } from 'pino';
import type { Run } from '@runt/protocol';

/** What the slots need of a held run (a `RunExecution`). */
export interface SlotRun {
  readonly runId: string;
  /** False once its terminal status is reported (or it was dropped). */
  readonly holdsSlot: boolean;
  readonly phase: string;
  /** Settles when the run is finished here; never rejects. */
  readonly done: Promise<void>;
  wakeCommands(): void;
  cancel(message?: string): void;
}

export interface RunSlotsOptions<E extends SlotRun> {
  /** Runs at once. */
  maxRuns: number;
  /** Take one run only. */
  once: boolean;
  /** Aborted when the agent stops taking offers (drain / shutdown). */
  taking: AbortSignal;
  /** Claims an offered run; `undefined` when the claim was refused. */
  claim: (run: Run) => Promise<E | undefined>;
  /** A held run finished here (its slot is free). */
  onDone: (exec: E) => void;
  /** A slot may be free (the agent wakes its poll). */
  onFreed?: () => void;
  logger: Logger;
}

/**
 * The agent's run slots: which runs it holds, which it is claiming, and whether it may take
 * another. An offer beyond capacity while a held run is still reporting its end is parked
 * rather than declined (the control plane frees the slot when it commits that terminal report,
 * so its next offer can arrive before the report's answer), and taken when the slot frees.
 * A `command` wake-up for a run still being claimed is kept until the claim is done.
 *
 * @example
 * const slots = new RunSlots({ maxRuns: 4, once: false, taking, claim: (run) => RunExecution.claim(deps, run), onDone, logger });
 * const taken = await slots.offer(run);
 */
export class RunSlots<E extends SlotRun> {
  readonly #runs = new Map<string, E>();
  readonly #claiming = new Set<string>();
  /** `command` wake-ups that arrived while their run was being claimed. */
  readonly #earlyCommands = new Set<string>();
  #parked: Array<{ run: Run; resolve: (ok: boolean) => void }> = [];
  #onceTaken = false;

  constructor(private readonly opts: RunSlotsOptions<E>) {}

  /** Ids of the runs held right now. */
  get ids(): string[] {
    return [...this.#runs.keys()];
  }

  /** Runs held right now (reporting ones included). */
  get size(): number {
    return this.#runs.size;
  }

  get(runId: string): E | undefined {
    return this.#runs.get(runId);
  }

  values(): E[] {
    return [...this.#runs.values()];
  }

  /** Whether another offer may be claimed now. */
  hasCapacity(): boolean {
    if (this.opts.taking.aborted || (this.opts.once && this.#onceTaken)) return false;
    return this.#slotsHeld() + this.#claiming.size < this.opts.maxRuns;
  }

  /** Claims an offered run when there is room (or parks it, see the class); `true` when taken. */
  async offer(run: Run): Promise<boolean> {
    if (this.#runs.has(run.id) || this.#claiming.has(run.id) || this.#parked.some((p) => p.run.id === run.id))
      return false;
    if (!this.hasCapacity()) {
      if (this.opts.taking.aborted || this.opts.once || this.#parked.length >= this.#reporting())
        return false;
      return new Promise<boolean>((resolve) => this.#parked.push({ run, resolve }));
    }
    this.#claiming.add(run.id);
    if (this.opts.once) this.#onceTaken = true;
    try {
      const exec = await this.opts.claim(run);
      if (!exec) {
        if (this.opts.once) this.#onceTaken = false;
        return false;
      }
      this.track(exec);
      return true;
    } catch (e) {
      if (this.opts.once) this.#onceTaken = false;
      this.opts.logger.error({ run_id: run.id, err: e }, 'cannot take the run');
      return false;
    } finally {
      this.#claiming.delete(run.id);
      this.#earlyCommands.delete(run.id);
    }
  }

  /** Holds a run (claimed or re-adopted) until it is done. */
  track(exec: E): void {
    this.#runs.set(exec.runId, exec);
    if (this.#earlyCommands.delete(exec.runId)) exec.wakeCommands();
    void exec.done.then(() => {
      this.#runs.delete(exec.runId);
      this.freed();
      this.opts.onDone(exec);
    });
  }

  /** A command was queued for `runId`: wake its run, or remember it while it is being claimed. */
  wakeCommands(runId: string): void {
    const exec = this.#runs.get(runId);
    if (exec) exec.wakeCommands();
    else if (this.#claiming.has(runId)) this.#earlyCommands.add(runId);
  }

  /** A slot may be free: take parked offers (or decline them when no longer taking), then `onFreed`. */
  freed(): void {
    queueMicrotask(() => {
      while (this.#parked.length > 0 && this.hasCapacity()) {
        const p = this.#parked.shift()!;
        void this.offer(p.run).then(p.resolve);
      }
      if (this.opts.taking.aborted || this.#parked.length > this.#reporting()) {
        for (const p of this.#parked.splice(0)) p.resolve(false);
      }
      this.opts.onFreed?.();
    });
  }

  /** Runs that still take a slot: a run whose terminal status is reported no longer does. */
  #slotsHeld(): number {
    let n = 0;
    for (const exec of this.#runs.values()) if (exec.holdsSlot) n++;
    return n;
  }

  /** Held runs in the middle of reporting their end. */
  #reporting(): number {
    let n = 0;
    for (const exec of this.#runs.values()) if (exec.phase === 'reporting') n++;
    return n;
  }
}
