// The subpath, not the package root: a table command must not load the whole agent to colour a word.
import { colourEnabled } from '@runt/agent/log-format';

/** The CLI's colour rule is the agent's (one home: `@runt/agent/log-format`). */
export { colourEnabled };

/** Green for what is done or healthy, red for what failed or is gone, yellow for what needs a look, cyan in flight. */
const CODES: Record<string, number> = {
  // runs and attempts
  completed: 32,
  failed: 31,
  cancelled: 33,
  blocked: 33,
  running: 36,
  accepted: 36,
  offered: 36,
  // workstations
  online: 32,
  offline: 31,
  draining: 33,
  revoked: 31,
  // credentials
  active: 32,
  // workspaces (live state)
  stopped: 33,
  missing: 31,
  unknown: 33,
};

/**
 * A status as tables show it (runs, attempts, workstations, credentials, workspaces): coloured
 * when {@link colourEnabled}, plain text otherwise. Padding around the word is kept.
 *
 * @example
 * this.log(colourStatus(run.status.padEnd(10)));
 */
export function colourStatus(
  text: string,
  out: { isTTY?: boolean } = process.stdout,
  env: NodeJS.ProcessEnv = process.env,
): string {
  if (!colourEnabled(out, env)) return text;
  const code = CODES[text.trim()];
  return code === undefined ? text : `\u001b[${code}m${text}\u001b[0m`;
}
