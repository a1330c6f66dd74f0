import { RuntimeError } from './errors.js';
import type { Runtime } from './runtime.js';

/** Builds a runtime; may be async so an embedder only loads an adapter (and dockerode) when asked. */
export type RuntimeFactory = () => Runtime | Promise<Runtime>;

/**
 * Runtimes by name. The user always names the runtime; the registry never guesses one, and
 * asking for an unknown name fails with a `runtime-unavailable` error that lists the known
 * names. Each runtime is created once, on first `get`, and shared afterwards.
 * @example
 * const registry = new RuntimeRegistry()
 *   .register('process', () => createProcessRuntime())
 *   .register('docker', async () => (await import('@runt/runtime-spi/docker')).createDockerRuntime());
 * const runtime = await registry.get(flags.runtime);
 */
export class RuntimeRegistry {
  readonly #factories = new Map<string, RuntimeFactory>();
  readonly #created = new Map<string, Promise<Runtime>>();

  /** Adds a factory under `name`; registering a taken name throws unless `replace` is set. */
  register(name: string, factory: RuntimeFactory, opts: { replace?: boolean } = {}): this {
    if (!name) throw new RuntimeError('invalid-spec', 'a runtime needs a non-empty name');
    if (this.#factories.has(name) && !opts.replace) {
      throw new RuntimeError('invalid-spec', `runtime "${name}" is already registered`, { runtime: name });
    }
    this.#factories.set(name, factory);
    this.#created.delete(name);
    return this;
  }

  has(name: string): boolean {
    return this.#factories.has(name);
  }

  /** Registered names, sorted. */
  names(): string[] {
    return [...this.#factories.keys()].sort();
  }

  /**
   * The runtime registered as `name`, created on first use. Rejects with a
   * `runtime-unavailable` RuntimeError naming the known runtimes when there is none.
   */
  async get(name: string): Promise<Runtime> {
    const factory = this.#factories.get(name);
    if (!factory) {
      const known = this.names();
      throw new RuntimeError(
        'runtime-unavailable',
        `unknown runtime "${name}"; known runtimes: ${known.length > 0 ? known.join(', ') : '(none registered)'}`,
        { runtime: name },
      );
    }
    let created = this.#created.get(name);
    if (!created) {
      created = Promise.resolve().then(factory);
      this.#created.set(name, created);
      created.catch(() => this.#created.delete(name));
    }
    return created;
  }

  /** Closes every runtime created so far. */
  async close(): Promise<void> {
    const created = [...this.#created.values()];
    this.#created.clear();
    await Promise.all(created.map(async (p) => (await p.catch(() => undefined))?.close()));
  }
}
