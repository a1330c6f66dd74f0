const MARKER = Symbol.for('runt.workspace-error');

export type WorkspaceErrorCode =
  'not-found' | 'name-taken' | 'invalid-argument' | 'state-corrupt' | 'locked' | 'runtime-failed';

/** Every error this package throws; check with {@link isWorkspaceError}, not `instanceof`. */
export class WorkspaceError extends Error {
  override readonly name = 'WorkspaceError';
  readonly [MARKER] = true;
  constructor(
    readonly code: WorkspaceErrorCode,
    message: string,
    opts?: { cause?: unknown },
  ) {
    super(message, opts);
  }
}

/**
 * True for a WorkspaceError from any copy of this package, optionally of one code.
 * @example
 * if (isWorkspaceError(e, 'not-found')) console.error(e.message);
 */
export function isWorkspaceError(e: unknown, code?: WorkspaceErrorCode): e is WorkspaceError {
  const ok = typeof e === 'object' && e !== null && (e as Record<symbol, unknown>)[MARKER] === true;
  return ok && (code === undefined || (e as WorkspaceError).code === code);
}
