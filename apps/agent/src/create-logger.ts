import pino, { type DestinationStream, type Logger } from 'pino';
import { redactingLogOptions } from '@runt/transport-auth';

/**
 * JSON-lines logs (pino) on stdout, or `destination`. Every object and message passes through
 * `redactSecrets`, so a token that slips into a log line is masked, never written.
 *
 * @example
 * const log = createLogger('info');
 * log.info({ run_id }, 'claimed');
 */
export function createLogger(level = 'info', destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'runt-agent' },
      timestamp: pino.stdTimeFunctions.isoTime,
      ...redactingLogOptions,
    },
    destination,
  );
}
