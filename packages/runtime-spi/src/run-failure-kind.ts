import { isRuntimeError } from './errors.js';

/**
 * The run failure kinds a runtime error can come to (a subset of `@runt/protocol`'s
 * `FailureKind`, spelled the same).
 */
export type RuntimeFailureKind = 'runtime-unavailable' | 'image-unavailable' | 'start-failed';

/**
 * Which failure kind a run gets when preparing or starting its workload threw `error`: a
 * `runtime-unavailable` error always means the runtime is gone; an `image-unavailable` error
 * means the image; anything else is `image-unavailable` while pulling the image
 * (`stage: 'image'`, from `ensureImage`) and `start-failed` while creating or starting the
 * instance (`stage: 'start'`).
 *
 * @example
 * try { await runtime.ensureImage(image) } catch (e) { report('failed', runFailureKind(e, 'image')) }
 */
export function runFailureKind(error: unknown, stage: 'image' | 'start'): RuntimeFailureKind {
  if (isRuntimeError(error, 'runtime-unavailable')) return 'runtime-unavailable';
  if (isRuntimeError(error, 'image-unavailable')) return 'image-unavailable';
  return stage === 'image' ? 'image-unavailable' : 'start-failed';
}
