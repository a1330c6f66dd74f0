import type { ExitStatus, InstanceSpec, InstanceState, LogChunk, LogStream } from '../runtime.js';
import type { FakeProcess } from './shell.js';

/** One instance as the fake engine stores it. */
export interface FakeInstanceRecord {
  id: string;
  name: string;
  spec: InstanceSpec;
  labels: Record<string, string>;
  state: InstanceState;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  exit?: ExitStatus;
  logs: LogChunk[];
  process?: FakeProcess;
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
  readonly instances = new Map<string, FakeInstanceRecord>();
  /** Images present "locally", by ref, with their content id. */
  readonly images = new Map<string, string>();
  #nextId = 1;
  #listeners = new Set<() => void>();

  newId(): string {
    return `fake-${String(this.#nextId++).padStart(6, '0')}`;
  }

  find(idOrName: string): FakeInstanceRecord | undefined {
    const byId = this.instances.get(idOrName);
    if (byId) return byId;
    for (const record of this.instances.values()) if (record.name === idOrName) return record;
    return undefined;
  }

  appendLog(record: FakeInstanceRecord, stream: LogStream, data: string): void {
    record.logs.push({ stream, data, at: new Date().toISOString() });
    this.changed();
  }

  /** Wakes everyone waiting for a change (new output, state change). */
  changed(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  /** Resolves on the next change or when the signal aborts. */
  nextChange(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const done = () => {
        this.#listeners.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      this.#listeners.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}
