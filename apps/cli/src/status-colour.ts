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
 * Whether the CLI colours what it prints, the one home of that choice: `FORCE_COLOR` set to
 * anything but `0` forces colour even when piped, `FORCE_COLOR=0` turns it off (as Node and
 * `supports-color` read it; it wins over `NO_COLOR`, as `CLICOLOR_FORCE` does for `gh`);
 * otherwise only when stdout is a terminal, `NO_COLOR` is unset or empty (https://no-color.org)
 * and `TERM` is not `dumb`.
 *
 * @example
 * colourEnabled({ isTTY: false }, { FORCE_COLOR: '1' }); // true
 */
export function colourEnabled(
  out: { isTTY?: boolean } = process.stdout,
  env: NodeJS.ProcessEnv = process.env,
): boolean {
  const force = env.FORCE_COLOR;
  if (force !== undefined && force !== '') return force !== '0' && force !== 'false';
  if ((env.NO_COLOR ?? '') !== '' || env.TERM === 'dumb') return false;
  return out.isTTY === true;
}

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
