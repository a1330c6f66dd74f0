import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Run } from '@runt/protocol';
import { type InstanceSpec, type ResourceLimits, runFailureKind, type Runtime } from '@runt/runtime-spi';
import type { LazyAbort } from './lazy-abort.js';
import { materializeBundle } from './materialize-bundle.js';
import { cancelled, failed, type Outcome } from './run-outcome.js';

/** Labels every instance the agent creates carries (how a restarted agent finds its work). */
export const RUN_ID_LABEL = 'runt.run-id';
export const WORKSTATION_LABEL = 'runt.workstation';

export interface PrepareRunOptions {
  run: Run;
  /** The run's secret env values (from the claim answer), put over their masked entries in `run.env`. */
  secretEnv?: Record<string, string> | undefined;
  /** The run's runtime, or why there is none. */
  runtime: Runtime | { unavailable: string };
  /** Parent of the per-run working directories; the run's is `workRoot/<run id>`. */
  workRoot: string;
  workstationId: string;
  /** The bundle's bytes; `undefined` when the run was dropped while downloading. */
  download: (sha256: string) => Promise<Uint8Array | undefined>;
  /** Aborted when the run is dropped: preparing ends with no outcome. */
  work: AbortSignal;
  /** Aborted when the run is cancelled: preparing ends `cancelled` (its signal is read only to pull an image). */
  cancel: AbortSignal | LazyAbort;
  cancelMessage: () => string;
  /** The instance exists (save its id before starting it, so a restart can find it). */
  onCreated: (instanceId: string) => Promise<void>;
  /** Creating begins (the run's phase moves to `starting`). */
  onStarting?: () => void;
  /**
   * The start gate (`--prefetch`): called once the instance id is saved, before the start;
   * `true` (or a promise of it) once the run may start, `false` when it must not (withdrawn:
   * cancelled, dropped, or the agent is stopping). Without it the run starts at once.
   */
  beforeStart?: (() => boolean | Promise<boolean>) | undefined;
}

/**
 * Whether a run gets a working directory (`workRoot/<run id>`): always for a runtime that reads
 * `sourcePath`, and for a run with a bundle; not for a runtime that says it never reads one (the
 * fake runtime) when there is nothing to unpack.
 */
export function needsWorkdir(run: Pick<Run, 'bundle'>, runtime: Runtime): boolean {
  return runtime.usesSourcePath !== false || Boolean(run.bundle);
}

/**
 * Started (the instance id), ended before starting (an outcome to report), dropped (nothing), or
 * created and never started because the start gate refused it (the agent is stopping: hand it back).
 */
export type PrepareResult =
  { started: string } | { outcome: Outcome } | { dropped: true } | { notStarted: string };

/**
 * Everything between a claim and a running workload: a fresh working directory (0700) with the
 * bundle unpacked into it (none for a runtime that never reads one, see {@link needsWorkdir}), the image pulled, the instance created with the run's labels, env,
 * limits and workdir, and started. Failures become the run's outcome (`runtime-unavailable`,
 * `image-unavailable`, `start-failed` via `runFailureKind`); a cancel ends it `cancelled`; a
 * dropped run ends it with nothing to report.
 *
 * @example
 * const r = await prepareRun({ run, runtime, workRoot, workstationId, download, work, cancel, cancelMessage: () => 'cancelled', onCreated });
 * if ('started' in r) follow(r.started);
 */
export async function prepareRun(opts: PrepareRunOptions): Promise<PrepareResult> {
  const { run, runtime, work, cancel } = opts;
  const wasCancelled = (): { outcome: Outcome } | undefined =>
    cancel.aborted ? { outcome: cancelled(opts.cancelMessage()) } : undefined;
  if ('unavailable' in runtime) return { outcome: failed('runtime-unavailable', runtime.unavailable) };

  const workdir = needsWorkdir(run, runtime) ? join(opts.workRoot, run.id) : undefined;
  if (workdir) {
    try {
      await rm(workdir, { recursive: true, force: true });
      await mkdir(workdir, { recursive: true, mode: 0o700 });
      if (run.bundle) {
        const bytes = await opts.download(run.bundle.sha256);
        if (!bytes) return wasCancelled() ?? { dropped: true };
        await materializeBundle(bytes, run.bundle.sha256, workdir);
      }
    } catch (e) {
      return {
        outcome: failed('start-failed', `cannot prepare the working directory: ${(e as Error).message}`),
      };
    }
  }
  if (cancel.aborted) return wasCancelled()!;

  if (run.image) {
    try {
      await runtime.ensureImage(run.image, {
        signal: AbortSignal.any([work, cancel instanceof AbortSignal ? cancel : cancel.signal]),
      });
    } catch (e) {
      if (cancel.aborted || work.aborted) return wasCancelled() ?? { dropped: true };
      return { outcome: failed(runFailureKind(e, 'image'), (e as Error).message) };
    }
  }

  opts.onStarting?.();
  let instanceId: string;
  const withWork = { signal: work };
  try {
    const instance = await runtime.create(instanceSpec(run, workdir, opts), withWork);
    instanceId = instance.id;
    await opts.onCreated(instanceId);
    if (cancel.aborted) return wasCancelled()!;
    if (opts.beforeStart) {
      // Created and durably journaled: a run taken ahead of a free slot waits here for one.
      // A boolean when it is decided now (a slot free, or the gate closed): no await then.
      let may = opts.beforeStart();
      if (typeof may !== 'boolean') may = await may;
      if (!may) {
        if (work.aborted) return { dropped: true };
        return wasCancelled() ?? { notStarted: instanceId };
      }
      if (cancel.aborted) return wasCancelled()!;
      work.throwIfAborted();
    }
    await runtime.start(instanceId, withWork);
  } catch (e) {
    if (work.aborted) return { dropped: true };
    if (cancel.aborted) return wasCancelled()!;
    return { outcome: failed(runFailureKind(e, 'start'), (e as Error).message) };
  }
  return { started: instanceId };
}

const INSTANCE_NAME_CLEAN = /^[A-Za-z0-9_.-]{1,120}$/;

/**
 * The instance of a run: its name, labels, env (secret values over their masked placeholders:
 * the workload's env is where they belong), limits, and what the run sets of source path,
 * image, command and workdir. Built field by field, not from conditional spreads: every run
 * makes one, and each `...(x ? { … } : {})` was a short-lived object of its own (issue 9, agent
 * heap profile).
 */
export function instanceSpec(
  run: Run,
  workdir: string | undefined,
  opts: Pick<PrepareRunOptions, 'secretEnv' | 'workstationId'>,
): InstanceSpec {
  const name = `runt-${run.id}-${run.attempt}`;
  const limits: ResourceLimits = {};
  if (run.resources.cpus) limits.cpus = run.resources.cpus;
  if (run.resources.memory_bytes) limits.memoryBytes = run.resources.memory_bytes;
  const spec: InstanceSpec = {
    name: INSTANCE_NAME_CLEAN.test(name) ? name : name.replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 120),
    env: { ...run.env, ...opts.secretEnv },
    labels: { [RUN_ID_LABEL]: run.id, [WORKSTATION_LABEL]: opts.workstationId },
    limits,
  };
  if (workdir) spec.sourcePath = workdir;
  if (run.image) spec.image = run.image;
  if (run.command.length > 0) spec.command = run.command;
  if (run.workdir) spec.workdir = run.workdir;
  return spec;
}
