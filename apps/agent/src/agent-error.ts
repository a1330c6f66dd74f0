const MARKER = Symbol.for('runt.agent-error');

/** Stable codes of {@link AgentError}: extend, never rename. */
export type AgentErrorCode =
  'config-invalid' | 'unauthorized' | 'no-runtime' | 'bundle-invalid' | 'link-failed' | 'internal';

/**
 * The agent's one error: a stable `name`, a string `code` and a one-line message that never
 * holds a secret. Check with {@link isAgentError}, not `instanceof`.
 */
export class AgentError extends Error {
  override readonly name = 'AgentError';
  readonly [MARKER] = true;
  constructor(
    readonly code: AgentErrorCode,
    message: string,
    opts?: { cause?: unknown },
  ) {
    super(message, opts);
  }
}

/**
 * True for an {@link AgentError} from any copy of this package, optionally of one code.
 *
 * @example
 * try { await agent.run() } catch (e) { if (isAgentError(e, 'unauthorized')) console.error('pair again') }
 */
export function isAgentError(e: unknown, code?: AgentErrorCode): e is AgentError {
  const ok = typeof e === 'object' && e !== null && (e as Record<symbol, unknown>)[MARKER] === true;
  return ok && (code === undefined || (e as AgentError).code === code);
}
