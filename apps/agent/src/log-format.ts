import type { DestinationStream } from 'pino';

/** How the agent writes its log: one JSON object a line, or one short line a person reads. */
export type LogFormat = 'pretty' | 'json';

export const LOG_FORMATS = ['pretty', 'json'] as const;

/**
 * The format when none is asked for: pretty on a terminal, JSON when the output is piped or
 * redirected (a log shipper, journald, a file), as Buildkite's agent and most CLIs choose.
 *
 * @example
 * defaultLogFormat(process.stdout); // 'pretty' in a terminal
 */
export function defaultLogFormat(out: { isTTY?: boolean }): LogFormat {
  return out.isTTY === true ? 'pretty' : 'json';
}

/**
 * Whether runt colours what it writes for a person — the agent's pretty log lines and the CLI's
 * tables — the one home of that choice: `FORCE_COLOR` set to anything but `0`/`false` forces
 * colour even when piped, `FORCE_COLOR=0` turns it off (as Node and `supports-color` read it; it
 * wins over `NO_COLOR`, as `CLICOLOR_FORCE` does for `gh`); otherwise only when the output is a
 * terminal, `NO_COLOR` is unset or empty (https://no-color.org) and `TERM` is not `dumb`.
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

const LEVELS: Record<number, { name: string; colour: string }> = {
  10: { name: 'TRACE', colour: '\x1b[90m' },
  20: { name: 'DEBUG', colour: '\x1b[90m' },
  30: { name: 'INFO', colour: '\x1b[36m' },
  40: { name: 'WARN', colour: '\x1b[33m' },
  50: { name: 'ERROR', colour: '\x1b[31m' },
  60: { name: 'FATAL', colour: '\x1b[35m' },
};
const DIM = '\x1b[2m';
const RESET = '\x1b[0m';
/** Fields every line has (or that say nothing to a person). */
const SKIPPED = new Set(['level', 'time', 'msg', 'service', 'pid', 'hostname']);
const MAX_VALUE = 160;

/**
 * One pino JSON line as a short line for a person: `12:04:35 WARN  message key=value …`. An
 * error field shows its message only (the stack stays in JSON and at debug). Values come from
 * the JSON pino wrote, after `redactSecrets`, so nothing here can unmask a token.
 *
 * @example
 * prettyLine({ level: 30, time: '2026-11-30T12:04:35.000Z', msg: 'agent running', max_runs: 2 }, false);
 * // '12:04:35 INFO  agent running max_runs=2'
 */
export function prettyLine(entry: Record<string, unknown>, colour: boolean): string {
  const level = LEVELS[Number(entry.level)] ?? { name: String(entry.level), colour: '' };
  const time = clock(entry.time);
  const fields: string[] = [];
  for (const [key, value] of Object.entries(entry)) {
    if (SKIPPED.has(key) || value === undefined || value === null) continue;
    if (Array.isArray(value) && value.length === 0) continue;
    const text = key === 'err' || key === 'error' ? errorText(value) : valueText(value);
    fields.push(colour ? `${DIM}${key}=${RESET}${text}` : `${key}=${text}`);
  }
  const name = level.name.padEnd(5);
  const head = colour ? `${DIM}${time}${RESET} ${level.colour}${name}${RESET}` : `${time} ${name}`;
  const message = typeof entry.msg === 'string' ? entry.msg : '';
  return [head, message, ...fields].filter(Boolean).join(' ');
}

/**
 * A pino destination that writes {@link prettyLine}s to `out` (a line that is not JSON is
 * passed on as it is).
 *
 * @example
 * const log = pino({}, prettyDestination(process.stdout, colourEnabled(process.stdout)));
 */
export function prettyDestination(out: NodeJS.WritableStream, colour: boolean): DestinationStream {
  return {
    write(line: string) {
      let entry: unknown;
      try {
        entry = JSON.parse(line);
      } catch {
        out.write(line);
        return;
      }
      if (typeof entry !== 'object' || entry === null) {
        out.write(line);
        return;
      }
      out.write(`${prettyLine(entry as Record<string, unknown>, colour)}\n`);
    },
  };
}

function clock(time: unknown): string {
  const d = typeof time === 'string' || typeof time === 'number' ? new Date(time) : new Date();
  if (Number.isNaN(d.getTime())) return String(time);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

function errorText(value: unknown): string {
  if (typeof value === 'object' && value !== null && 'message' in value)
    return valueText(String(value.message).split('\n')[0]);
  return valueText(value);
}

function valueText(value: unknown): string {
  let text: string;
  if (typeof value === 'string') text = value;
  else if (Array.isArray(value) && value.every((v) => typeof v !== 'object')) text = value.join(',');
  else text = JSON.stringify(value);
  if (text.length > MAX_VALUE) text = `${text.slice(0, MAX_VALUE - 1)}…`;
  return /[\s"=]/.test(text) || text === '' ? JSON.stringify(text) : text;
}
