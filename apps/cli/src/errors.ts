const MARKER = Symbol.for('runt.cli-error');

/** An error meant for the user: its message is printed as one line, then the CLI exits with `exitCode`. */
export class CliError extends Error {
  override readonly name = 'CliError';
  readonly [MARKER] = true;
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export function isCliError(e: unknown): e is CliError {
  return typeof e === 'object' && e !== null && (e as Record<symbol, unknown>)[MARKER] === true;
}
