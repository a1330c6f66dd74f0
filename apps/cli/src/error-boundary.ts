import { isApiError } from '@runt/protocol';
import { isPairingError } from '@runt/pairing';
import { redactSecrets } from '@runt/transport-auth';
import { isRuntimeError } from '@runt/runtime-spi';
import { isWorkspaceError } from '@runt/workspaces';
import { credentialKindInUse } from './config.js';
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
  if (isPairingError(e) || isWorkspaceError(e) || isRuntimeError(e))
    return { message: firstLine((e as Error).message), exitCode: 1 };
  if (isApiError(e)) {
    if (e.code === 'unauthorized') return { message: refusedCredential(e.message), exitCode: 1 };
    return { message: e.message, exitCode: 1 };
  }
  // oclif's own errors (unknown flag, missing argument) carry an exit code.
  if (typeof err?.oclif?.exit === 'number')
    return { message: parseErrorLine(err.message ?? 'error'), exitCode: err.oclif.exit };
  return { message: firstLine(err?.message ?? String(e)), exitCode: 1 };
}

/** A 401 worded for the credential this invocation used (the server's words would be redacted). */
function refusedCredential(serverMessage: string): string {
  const why = /missing/.test(serverMessage)
    ? 'none was sent'
    : /malformed/.test(serverMessage)
      ? 'it is malformed'
      : 'it is unknown or revoked';
  if (credentialKindInUse() === 'admin') {
    return `the control plane refused the admin token (${why}): check RUNT_ADMIN_TOKEN, --token-file or runt admin login`;
  }
  return `the control plane refused this workstation's credential (${why}): if it was revoked, pair again with runt workstation connect <url> --code XXXX-XXXX-XXXX`;
}

/**
 * oclif's parse errors span lines ("The following error occurred:", "Parsing --ttl", the
 * reason on the next line, "See more help"): folded into one whole line that names the flag
 * or argument and the reason.
 */
export function parseErrorLine(message: string): string {
  const lines = message
    .split('\n')
    .map((l) => l.trim())
    .filter(
      (l) =>
        l !== '' && !/^See more help with --help$/.test(l) && !/^The following errors? occurred:$/.test(l),
    );
  const parsing = /^Parsing (--\S+)$/.exec(lines[0] ?? '');
  if (parsing) return `${parsing[1]}: ${lines.slice(1).join('; ') || 'invalid value'}`;
  const missingArgs = /^Missing \d+ required args?:$/.exec(lines[0] ?? '');
  if (missingArgs) {
    const names = lines.slice(1).map((l) => {
      const [name, ...rest] = l.split(/\s{2,}/);
      return rest.length ? `${name} (${rest.join(' ')})` : name;
    });
    return `missing required argument ${names.join(', ')}`;
  }
  return lines
    .map((l) => l.replace(/^Missing required flag (\S+)$/, 'missing required flag --$1'))
    .join('; ');
}

function firstLine(s: string): string {
  return (
    s
      .split('\n')
      .find((l) => l.trim() !== '')
      ?.trim() ?? s
  );
}

/** Prints the error as `runt: <message>` (and the stack when DEBUG names runt), sets the exit code. */
export function reportError(e: unknown, write: (s: string) => void = (s) => process.stderr.write(s)): number {
  const { message, exitCode } = describeError(e);
  if (exitCode === 0) return 0;
  write(`runt: ${redactSecrets(message)}\n`);
  if (/\brunt/.test(process.env.DEBUG ?? '') && e instanceof Error && e.stack)
    write(`${redactSecrets(e.stack)}\n`);
  return exitCode;
}
