import type { ExitStatus, InstanceSpec, InstanceState, LogChunk, LogStream } from '../runtime.js';
import type { FakeProcess } from './shell.js';

/**
 * One instance as the fake engine stores it. Every field is set when it is made (`undefined`
 * where it has no value yet) and cleared by setting `undefined`, never `delete`d: a deleted
 * property turns the object into a dictionary (V8's slow properties), and every later read of
 * the record — a run's exit waiter, output follower and removal — then goes through a hash
 * lookup (issue 9: every run's record went slow at its exit; agent profile under the fake runtime).
 */
export interface FakeInstanceRecord {
  id: string;
  name: string;
  spec: InstanceSpec;
  labels: Record<string, string>;
  state: InstanceState;
  createdAt: string;
  startedAt?: string | undefined;
  finishedAt?: string | undefined;
  exit?: ExitStatus | undefined;
  logs: LogChunk[];
  process?: FakeProcess | undefined;
  /** Everything still running inside (exec sessions, terminals) that dies with the instance. */
  children: Set<{ kill(signal: string): void }>;
}

/**
 * The in-memory "engine" behind fake runtimes. Pass one engine to several
 * `createFakeRuntime({ engine })` calls to model adapters that restart while their
 * instances live on (that is how the conformance suite re-attaches).
 * @example
 * const engine = new FakeEngine();
 * const first = createFakeRuntime({ engine });
 * const second = createFakeRuntime({ engine }); // sees what `first` created
 */
export class FakeEngine {
  /** Every instance by id; read it freely, change it through {@link add} and {@link delete} (they keep the name index). */
  readonly instances = new Map<string, FakeInstanceRecord>();
  /**
   * Every instance by name (names are unique: `create` refuses a taken one). A create looked
   * for its name among every instance; an agent with 50 runs held (25 slots, prefetch 25)
   * scanned 50 records per run (issue 9, agent profile under the bench's fake runtime).
   */
  readonly #byName = new Map<string, FakeInstanceRecord>();
  /** Images present "locally", by ref, with their content id. */
  readonly images = new Map<string, string>();
  #nextId = 1;
  /** Woken by every change. */
  #listeners = new Set<() => void>();
  /**
   * Woken by a change of one instance: its output follower and its exit waiter (not every
   * waiter of every instance, which cost an agent with 25 runs in flight ~50 wake-ups, promises
   * and abort listeners per change; issue 9, agent profile under the bench's fake runtime).
   */
  readonly #byRecord = new WeakMap<FakeInstanceRecord, Set<() => void>>();
  /**
   * Waiters by the signal that ends their wait early: one abort listener per signal, added the
   * first time it is given, not one added and removed per wait (a run's exit waiter and output
   * follower wait on their signals once per change: issue 9, agent profile under the bench's
   * fake runtime, where `addEventListener`/`removeEventListener` were among the top items).
   */
  readonly #bySignal = new WeakMap<AbortSignal, Array<() => void>>();

  newId(): string {
    return `fake-${String(this.#nextId++).padStart(6, '0')}`;
  }

  /** The instance with this id, else the one with this name. */
  find(idOrName: string): FakeInstanceRecord | undefined {
    return this.instances.get(idOrName) ?? this.#byName.get(idOrName);
  }

  /** Adds an instance (its name must be free: see {@link find}). */
  add(record: FakeInstanceRecord): void {
    this.instances.set(record.id, record);
    this.#byName.set(record.name, record);
  }

  /** Removes an instance; nothing when it is not there. */
  delete(record: FakeInstanceRecord): void {
    if (this.instances.get(record.id) !== record) return;
    this.instances.delete(record.id);
    if (this.#byName.get(record.name) === record) this.#byName.delete(record.name);
  }

  appendLog(record: FakeInstanceRecord, stream: LogStream, data: string): void {
    record.logs.push({ stream, data, at: new Date().toISOString() });
    this.changed(record);
  }

  /**
   * Wakes everyone waiting for a change (new output, state change): those waiting for any
   * change, and those waiting for a change of `record` (all of them when it is not given).
   */
  changed(record?: FakeInstanceRecord): void {
    const mine = record ? this.#byRecord.get(record) : undefined;
    if (mine) for (const listener of [...mine]) listener();
    if (this.#listeners.size > 0) for (const listener of [...this.#listeners]) listener();
    if (!record)
      for (const r of this.instances.values()) {
        const theirs = this.#byRecord.get(r);
        if (theirs) for (const listener of [...theirs]) listener();
      }
  }

  /** Resolves on the next change (of `record`, when given) or when the signal aborts. */
  nextChange(signal?: AbortSignal, record?: FakeInstanceRecord): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      let set = this.#listeners;
      if (record) {
        const known = this.#byRecord.get(record);
        if (known) set = known;
        else this.#byRecord.set(record, (set = new Set()));
      }
      const aborts = signal ? this.#waitersOf(signal) : undefined;
      const done = () => {
        set.delete(done);
        if (aborts) {
          const at = aborts.indexOf(done);
          if (at >= 0) aborts.splice(at, 1);
        }
        resolve();
      };
      set.add(done);
      aborts?.push(done);
    });
  }

  /**
   * The waiters `signal` wakes when it aborts (its one listener is added with the first of them;
   * a signal has a waiter or two at a time: an array, not a Set).
   */
  #waitersOf(signal: AbortSignal): Array<() => void> {
    let waiters = this.#bySignal.get(signal);
    if (!waiters) {
      const mine: Array<() => void> = [];
      this.#bySignal.set(signal, mine);
      signal.addEventListener(
        'abort',
        () => {
          for (const wake of [...mine]) wake();
        },
        { once: true },
      );
      waiters = mine;
    }
    return waiters;
  }
}
