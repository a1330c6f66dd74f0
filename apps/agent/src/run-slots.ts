import type { Logger } from 'pino';
import type { ClaimRunResponse, Run } from '@runt/protocol';

/** What the slots need of a held run (a `RunExecution`). */
export interface SlotRun {
  readonly runId: string;
  /** The token of the attempt held (a claim on offer re-sent with it is this same attempt). */
  readonly fencingToken?: number;
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
  /** Runs taken ahead of a free slot (`--prefetch`, default 0): offers are taken up to `maxRuns + prefetch`. */
  prefetch?: number;
  /** Take one run only. */
  once: boolean;
  /** Aborted when the agent stops taking offers (drain / shutdown). */
  taking: AbortSignal;
  /** Claims an offered run; `undefined` when the claim was refused. */
  claim: (run: Run) => Promise<E | undefined>;
  /** Takes a run claimed for this agent on offer (no claim round trip); `undefined` when it cannot (it is then handed back). */
  accept?: (claim: ClaimRunResponse) => Promise<E | undefined>;
  /** A held run finished here (its slot is free). */
  onDone: (exec: E) => void;
  /** A slot may be free (the agent wakes its poll). */
  onFreed?: () => void;
  logger: Logger;
}

/**
 * The agent's run slots: which runs it holds, which it is claiming, and whether it may take
 * another. A slot is taken by a run whose workload may still run: a run reporting its end does
 * not count, exactly as on the control plane, which frees the slot when it commits that
 * terminal report (and may offer the next run before the report's answer is back here). So an
 * offer the scheduler made within the capacity it promised is always taken, never handed back.
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
  /** The answer given to each claim on offer (`run#token`, the last 10,000): taken or handed back. */
  readonly #claims = new Map<string, boolean>();
  #onceTaken = false;
  /** Offers and claims on offer not yet answered (claims in flight included). */
  #answering = 0;
  #idle: Array<() => void> = [];

  constructor(private readonly opts: RunSlotsOptions<E>) {}

  /**
   * Resolves once every offer and claim on offer received so far is answered: taken (then
   * held, in `values()`) or refused / handed back. The agent's shutdown waits for it before it
   * looks at the runs it holds, so a claim answered late is never started after the runtimes
   * are closed (issue 8 review).
   */
  settled(): Promise<void> {
    if (this.#answering === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  async #answer<T>(work: () => Promise<T>): Promise<T> {
    this.#answering++;
    try {
      return await work();
    } finally {
      if (--this.#answering === 0) for (const wake of this.#idle.splice(0)) wake();
    }
  }

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
    return this.#slotsHeld() + this.#claiming.size < this.opts.maxRuns + (this.opts.prefetch ?? 0);
  }

  /**
   * Claims an offered run when there is room; `true` when taken. An offer of a run already
   * held or being claimed (the control plane re-sends offers when a link registers) is `true`
   * too: answering it `false` would hand back a run this agent is taking and re-queue it
   * (issue 9, offer churn).
   */
  offer(run: Run): Promise<boolean> {
    return this.#answer(async () => {
      const settling = this.#settling(run.id);
      if (settling) await settling;
      return this.#take(run, () => this.opts.claim(run));
    });
  }

  /**
   * Takes a run the control plane claimed for this agent on offer, when there is room; `false`
   * means hand it back (no room, not taking, or it cannot be taken). The same claim (run and
   * token) offered again — re-sent after a re-link, or crossing this agent's answer — gets the
   * answer it got the first time: a run handed back is handed back again and never started, a
   * run taken is not taken twice. A new claim of a run still settling here (a retry) waits for
   * the old attempt to be done.
   */
  async accept(claim: ClaimRunResponse): Promise<boolean> {
    const key = `${claim.run.id}#${claim.fencing_token}`;
    const before = this.#claims.get(key);
    if (before !== undefined) return before;
    this.#remember(key, true); // while it is being taken, a re-sent offer needs no answer
    return this.#answer(async () => {
      const settling = this.#settling(claim.run.id);
      if (settling) await settling;
      const accept = this.opts.accept;
      const taken = accept ? await this.#take(claim.run, () => accept(claim)) : false;
      this.#claims.set(key, taken);
      return taken;
    });
  }

  /** Keeps the answer to a claim (the last 10,000). */
  #remember(key: string, taken: boolean): void {
    this.#claims.delete(key);
    this.#claims.set(key, taken);
    if (this.#claims.size > 10_000) this.#claims.delete(this.#claims.keys().next().value!);
  }

  /**
   * A retried run can be offered again while its failed attempt is still settling here (its
   * terminal report was committed, the answer not yet handled): that is a new attempt to claim,
   * not a re-sent offer, so it is claimed once the old attempt is done.
   */
  #settling(runId: string): Promise<void> | undefined {
    const held = this.#runs.get(runId);
    return held && (held.phase === 'reporting' || !held.holdsSlot) ? held.done : undefined;
  }

  async #take(run: Run, take: () => Promise<E | undefined>): Promise<boolean> {
    if (this.#runs.has(run.id) || this.#claiming.has(run.id)) return true;
    if (!this.hasCapacity()) return false;
    this.#claiming.add(run.id);
    if (this.opts.once) this.#onceTaken = true;
    try {
      const exec = await take();
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
    // Taken, however it came (a claim after a plain offer, a claim on offer): the same claim
    // re-sent as `offer-claimed` later — a re-link's registration read the run as claimed and
    // not started while its reports were in flight — is this attempt, never a second start
    // (issue 8, chaos: a run executed twice this way, after its first start had completed).
    if (exec.fencingToken !== undefined) this.#remember(`${exec.runId}#${exec.fencingToken}`, true);
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

  /** A slot may be free (`onFreed`: the agent wakes its poll). */
  freed(): void {
    queueMicrotask(() => this.opts.onFreed?.());
  }

  /**
   * Runs that still take a slot: those whose workload may still run. A run reporting its end
   * (its workload has exited) no longer does, as on the control plane, which frees the slot
   * when it commits that terminal report and may offer the next run before the answer is back
   * here; counting it would decline (re-queue) an offer the scheduler rightly made.
   */
  #slotsHeld(): number {
    let n = 0;
    for (const exec of this.#runs.values()) if (exec.holdsSlot && exec.phase !== 'reporting') n++;
    return n;
  }
}
