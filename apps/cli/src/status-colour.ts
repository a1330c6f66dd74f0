const CODES: Record<string, number> = {
  completed: 32,
  failed: 31,
  cancelled: 33,
  blocked: 33,
  running: 36,
  accepted: 36,
  offered: 36,
};

/**
 * A run status as a table shows it: coloured (green completed, red failed, yellow cancelled or
 * blocked, cyan in flight) only when stdout is a terminal and `NO_COLOR` is unset
 * (https://no-color.org) and `TERM` is not `dumb`; plain text when piped.
 *
 * @example
 * this.log(colourStatus(run.status.padEnd(10)));
 */
export function colourStatus(
  text: string,
  out: { isTTY?: boolean } = process.stdout,
  env: NodeJS.ProcessEnv = process.env,
): string {
  if (!out.isTTY || (env.NO_COLOR ?? '') !== '' || env.TERM === 'dumb') return text;
  const code = CODES[text.trim()];
  return code === undefined ? text : `\u001b[${code}m${text}\u001b[0m`;
}
