import { CliError } from './errors.js';

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/**
 * Parses a duration flag into whole seconds: `90` or `90s`, `10m`, `2h`, `1d`, or a sum such as
 * `1h30m`. Anything else is a one-line `CliError` naming the flag.
 *
 * @example
 * parseDuration('10m', 'timeout'); // 600
 */
export function parseDuration(text: string, flag: string, min = 1): number {
  const t = text.trim();
  if (/^\d+$/.test(t)) return check(Number(t), text, flag, min);
  if (!/^(\d+[smhd])+$/.test(t))
    throw new CliError(`invalid --${flag} "${text}": use a duration such as 90s, 10m, 2h or 1h30m`);
  let seconds = 0;
  for (const [, n, unit] of t.matchAll(/(\d+)([smhd])/g)) seconds += Number(n) * UNIT_SECONDS[unit!]!;
  return check(seconds, text, flag, min);
}

function check(seconds: number, text: string, flag: string, min: number): number {
  if (seconds < min) throw new CliError(`invalid --${flag} "${text}": must be at least ${min}s`);
  return seconds;
}
