import pino, { type DestinationStream, type Logger } from 'pino';
import { redactingLogOptions } from '@runt/transport-auth';
import { colourEnabled, defaultLogFormat, prettyDestination, type LogFormat } from './log-format.js';

/**
 * The agent's logger (pino). `json`: JSON lines on stdout, or `destination`. `pretty`: one short
 * line per event for a person (`log-format.ts`), coloured when {@link colourEnabled} says so for
 * the stream it writes to and `env` (a terminal without `NO_COLOR`, or `FORCE_COLOR`).
 * Without a format: pretty when stdout is a terminal, JSON otherwise. Every object and message
 * passes through `redactSecrets` before either format sees it, so a token that slips into a log
 * line is masked, never written.
 *
 * @example
 * const log = createLogger('info');
 * log.info({ run_id }, 'claimed');
 */
export function createLogger(
  level = 'info',
  destination?: DestinationStream,
  format: LogFormat = destination ? 'json' : defaultLogFormat(process.stdout),
  env: NodeJS.ProcessEnv = process.env,
): Logger {
  const stream = (destination as (NodeJS.WritableStream & { isTTY?: boolean }) | undefined) ?? process.stdout;
  const out = format === 'pretty' ? prettyDestination(stream, colourEnabled(stream, env)) : destination;
  return pino(
    {
      level,
      base: { service: 'runt-agent' },
      timestamp: pino.stdTimeFunctions.isoTime,
      ...redactingLogOptions,
    },
    out,
  );
}
