import { randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import {
  isRuntimeError,
  type Instance,
  type Runtime,
  type RuntimeRegistry,
  type TerminalSession,
} from '@runt/runtime-spi';
import { WorkspaceError } from './errors.js';
import type { WorkspaceRecord, WorkspaceState, WorkspaceStore } from './workspace-store.js';

/** Label on every instance a workspace owns; its value is the workspace id. */
export const WORKSPACE_LABEL = 'runt.workspace';

/**
 * What a workspace instance runs: a shell that sleeps until stopped and exits 0 on
 * SIGTERM, so `stop` is prompt and clean on every runtime (host process or busybox image).
 */
export const KEEPALIVE_COMMAND = ['/bin/sh', '-c', 'trap "exit 0" TERM INT; sleep infinity & wait'];

export interface InitWorkspaceOptions {
  sources: string;
  runtime: string;
  name?: string;
  configPath?: string;
  image?: string;
}

/** A stored workspace plus what its runtime says right now. */
export interface WorkspaceView extends WorkspaceRecord {
  /** Live state from the runtime: `running`, `stopped`, `missing` (instance gone) or `unknown` (runtime unreachable). */
  liveState: 'running' | 'stopped' | 'missing' | 'unknown';
}

const NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/;

/**
 * Local workspaces: a named sources directory living in an instance of the runtime the user
 * names. Composes a {@link WorkspaceStore} (state in the config dir, locked) with a
 * {@link RuntimeRegistry}; nothing is auto-detected.
 *
 * @example
 * const ws = new WorkspaceManager({ store, registry });
 * await ws.init({ sources: './my-repo', runtime: 'process' });
 * const session = await ws.terminal('my-repo');
 */
export class WorkspaceManager {
  constructor(private readonly deps: { store: WorkspaceStore; registry: RuntimeRegistry }) {}

  /** Registers the workspace (stopped), creates and starts its instance, records the runtime's info, marks it running. */
  async init(opts: InitWorkspaceOptions): Promise<WorkspaceRecord> {
    const sourcePath = resolve(opts.sources);
    const isDir = await stat(sourcePath).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (!isDir)
      throw new WorkspaceError('invalid-argument', `sources must be an existing directory: ${sourcePath}`);
    const configPath = opts.configPath ? resolve(opts.configPath) : undefined;
    if (
      configPath &&
      !(await stat(configPath).then(
        (s) => s.isFile(),
        () => false,
      ))
    ) {
      throw new WorkspaceError('invalid-argument', `config must be an existing file: ${configPath}`);
    }
    const name = (opts.name ?? basename(sourcePath))
      .toLowerCase()
      .replace(/[^a-z0-9_.-]+/g, '-')
      .replace(/^[^a-z0-9]+/, '');
    if (!NAME.test(name))
      throw new WorkspaceError(
        'invalid-argument',
        `invalid workspace name "${opts.name ?? name}": use letters, digits, ".", "_" or "-"`,
      );
    const runtime = await this.deps.registry.get(opts.runtime); // unknown runtime: a clear error listing the known ones

    const now = new Date().toISOString();
    const record: WorkspaceRecord = {
      id: `wsp_${randomUUID().slice(0, 8)}`,
      name,
      runtime: opts.runtime,
      sourcePath,
      ...(configPath ? { configPath } : {}),
      ...(opts.image ? { image: opts.image } : {}),
      state: 'stopped',
      createdAt: now,
      updatedAt: now,
    };
    await this.deps.store.update((all) => {
      if (all.some((w) => w.name === name))
        throw new WorkspaceError('name-taken', `a workspace named "${name}" exists already`);
      all.push(record);
    });

    let instanceId: string | undefined;
    try {
      if (record.image) await runtime.ensureImage(record.image);
      const instance = await runtime.create({
        name: `runt-ws-${name}-${record.id.slice(4)}`,
        sourcePath,
        ...(configPath ? { configPath } : {}),
        ...(record.image ? { image: record.image } : {}),
        command: KEEPALIVE_COMMAND,
        labels: { [WORKSPACE_LABEL]: record.id, 'runt.workspace-name': name },
      });
      instanceId = instance.id;
      await this.save(record.id, { instanceId, runtimeInfo: info(instance) });
      const started = await runtime.start(instance.id);
      return await this.save(record.id, { state: 'running', runtimeInfo: info(started) });
    } catch (e) {
      // Leave nothing half-made: drop the instance (if any) and the registration, so the same
      // init can simply be run again once the cause is fixed.
      if (instanceId) await runtime.remove(instanceId).catch(() => {});
      await this.deps.store.update((all) => {
        const i = all.findIndex((w) => w.id === record.id);
        if (i >= 0) all.splice(i, 1);
      });
      throw runtimeFailure(e, `could not create workspace "${name}" in ${opts.runtime}`);
    }
  }

  /** Every workspace from every runtime, with live state asked of each runtime. */
  async list(): Promise<WorkspaceView[]> {
    const all = await this.deps.store.list();
    return Promise.all(all.map((w) => this.view(w)));
  }

  /** Starts a stopped workspace (a no-op when running). */
  async start(ref: string): Promise<WorkspaceRecord> {
    const { record, runtime, instanceId } = await this.resolve(ref);
    try {
      const live = await runtime.inspect(instanceId);
      if (!live)
        throw new WorkspaceError(
          'runtime-failed',
          `the instance of "${record.name}" is gone from ${record.runtime}; remove the workspace and init it again`,
        );
      if (live.state === 'running')
        return this.save(record.id, { state: 'running', runtimeInfo: info(live) });
      const started = await runtime.start(instanceId);
      return this.save(record.id, { state: 'running', runtimeInfo: info(started) });
    } catch (e) {
      throw runtimeFailure(e, `could not start "${record.name}"`);
    }
  }

  /** Stops a workspace (SIGTERM, then kill after `timeoutMs`). */
  async stop(ref: string, opts: { timeoutMs?: number } = {}): Promise<WorkspaceRecord> {
    const { record, runtime, instanceId } = await this.resolve(ref);
    try {
      await runtime.stop(instanceId, { timeoutMs: opts.timeoutMs ?? 10_000 });
    } catch (e) {
      if (!isRuntimeError(e, 'instance-not-found'))
        throw runtimeFailure(e, `could not stop "${record.name}"`);
    }
    return this.save(record.id, { state: 'stopped' });
  }

  /**
   * Stops and removes the instance, then unregisters the workspace. With `force` it is
   * unregistered even when the runtime cannot be reached or fails to remove the instance.
   */
  async remove(ref: string, opts: { force?: boolean } = {}): Promise<WorkspaceRecord> {
    const record = await this.deps.store.get(ref);
    try {
      const runtime = await this.deps.registry.get(record.runtime);
      if (record.instanceId) {
        await runtime.stop(record.instanceId, { timeoutMs: 10_000 }).catch((e: unknown) => {
          if (!isRuntimeError(e, 'instance-not-found')) throw e;
        });
        await runtime.remove(record.instanceId).catch((e: unknown) => {
          if (!isRuntimeError(e, 'instance-not-found')) throw e;
        });
      }
    } catch (e) {
      if (!opts.force)
        throw runtimeFailure(e, `could not remove "${record.name}" (--force unregisters it anyway)`);
    }
    await this.deps.store.update((all) => {
      const i = all.findIndex((w) => w.id === record.id);
      if (i >= 0) all.splice(i, 1);
    });
    return record;
  }

  /** An interactive shell in the workspace, starting it first when stopped. */
  async terminal(
    ref: string,
    opts: { cols?: number; rows?: number } = {},
  ): Promise<{ record: WorkspaceRecord; session: TerminalSession }> {
    const resolved = await this.resolve(ref);
    const { runtime, instanceId } = resolved;
    let { record } = resolved;
    const live = await runtime.inspect(instanceId);
    if (live?.state !== 'running') record = await this.start(record.id);
    const session = await runtime.terminal(instanceId, {
      ...(opts.cols ? { cols: opts.cols } : {}),
      ...(opts.rows ? { rows: opts.rows } : {}),
      command: ['/bin/sh'],
    });
    return { record, session };
  }

  private async view(w: WorkspaceRecord): Promise<WorkspaceView> {
    if (!w.instanceId) return { ...w, liveState: 'missing' };
    try {
      const runtime = await this.deps.registry.get(w.runtime);
      const live = await runtime.inspect(w.instanceId);
      if (!live) return { ...w, liveState: 'missing' };
      return { ...w, liveState: live.state === 'running' ? 'running' : 'stopped' };
    } catch {
      return { ...w, liveState: 'unknown' };
    }
  }

  private async resolve(
    ref: string,
  ): Promise<{ record: WorkspaceRecord; runtime: Runtime; instanceId: string }> {
    const record = await this.deps.store.get(ref);
    if (!record.instanceId)
      throw new WorkspaceError(
        'runtime-failed',
        `"${record.name}" has no instance (init failed: ${record.error ?? 'unknown'}); remove it and init again`,
      );
    const runtime = await this.deps.registry.get(record.runtime);
    return { record, runtime, instanceId: record.instanceId };
  }

  private save(
    id: string,
    patch: Partial<WorkspaceRecord> & { state?: WorkspaceState },
  ): Promise<WorkspaceRecord> {
    return this.deps.store.update((all) => {
      const w = all.find((x) => x.id === id);
      if (!w) throw new WorkspaceError('not-found', `workspace ${id} was removed meanwhile`);
      Object.assign(w, patch, { updatedAt: new Date().toISOString() });
      if (patch.state && patch.state !== 'error') delete w.error;
      return { ...w };
    });
  }
}

function info(i: Instance): Record<string, unknown> {
  return JSON.parse(
    JSON.stringify({
      id: i.id,
      name: i.name,
      state: i.state,
      image: i.image,
      startedAt: i.startedAt,
      details: i.details,
    }),
  ) as Record<string, unknown>;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function runtimeFailure(e: unknown, context: string): Error {
  if (e instanceof WorkspaceError) return e;
  return new WorkspaceError('runtime-failed', `${context}: ${messageOf(e)}`, { cause: e });
}
