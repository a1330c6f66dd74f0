import pino, { type DestinationStream, type Logger } from 'pino';
import { redactingLogOptions } from '@runt/transport-auth';

/**
 * Structured JSON logs on stdout (or `destination`). Every logged object and message passes
 * through `redactSecrets`, so a token that slips into a log line is masked, not written.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'runt-control-plane' },
      timestamp: pino.stdTimeFunctions.isoTime,
      ...redactingLogOptions,
    },
    destination,
  );
}
