import { isApiError } from '@runt/protocol';
import { isPairingError } from '@runt/pairing';
import { redactSecrets } from '@runt/transport-auth';
import { isRuntimeError } from '@runt/runtime-spi';
import { isWorkspaceError } from '@runt/workspaces';
import { isCliError } from './errors.js';

export interface UserFacingError {
  message: string;
  exitCode: number;
}

/**
 * The CLI's one error boundary: every error becomes one line and an exit code. Commands just
 * throw. Secrets are redacted from whatever is printed.
 */
export function describeError(e: unknown): UserFacingError {
  const err = e as { message?: string; oclif?: { exit?: number }; code?: string };
  if (isCliError(e)) return { message: e.message, exitCode: e.exitCode };
  if (isPairingError(e) || isWorkspaceError(e) || isRuntimeError(e)) return { message: firstLine((e as Error).message), exitCode: 1 };
  if (isApiError(e)) {
    if (e.code === 'unauthorized') return { message: `${e.message} (is the credential revoked? pair again with runt workstation connect)`, exitCode: 1 };
    return { message: e.message, exitCode: 1 };
  }
  // oclif's own errors (unknown flag, missing argument) carry an exit code.
  if (typeof err?.oclif?.exit === 'number') return { message: firstLine(err.message ?? 'error'), exitCode: err.oclif.exit };
  return { message: firstLine(err?.message ?? String(e)), exitCode: 1 };
}

function firstLine(s: string): string {
  return s.split('\n').find((l) => l.trim() !== '')?.trim() ?? s;
}

/** Prints the error as `runt: <message>` (and the stack when DEBUG names runt), sets the exit code. */
export function reportError(e: unknown, write: (s: string) => void = (s) => process.stderr.write(s)): number {
  const { message, exitCode } = describeError(e);
  if (exitCode === 0) return 0;
  write(`runt: ${redactSecrets(message)}\n`);
  if (/\brunt/.test(process.env.DEBUG ?? '') && e instanceof Error && e.stack) write(`${redactSecrets(e.stack)}\n`);
  return exitCode;
}
