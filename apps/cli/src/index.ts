import { flush, run } from '@oclif/core';
import { reportError } from './error-boundary.js';

export { CliError, isCliError } from './errors.js';
export { describeError, reportError } from './error-boundary.js';

/**
 * Runs the CLI. Used by `bin/run.js`; all errors end here as one line and an exit code.
 *
 * @example
 * await runCli(['workstation', 'status', '--json'], import.meta.url);
 */
export async function runCli(argv: string[], entryUrl: string): Promise<void> {
  try {
    await run(argv, entryUrl);
    await flush();
  } catch (e) {
    const err = e as { oclif?: { exit?: number }; code?: string };
    // `this.exit(0)` and --help/--version end through an ExitError with code 0.
    if (err?.code === 'EEXIT' && err.oclif?.exit === 0) return;
    process.exitCode = reportError(e);
  }
}
