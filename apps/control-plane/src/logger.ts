import pino, { type DestinationStream, type Logger } from 'pino';
import { redactingLogOptions } from '@runt/transport-auth';

/** Log bytes kept waiting for a stdout nobody reads; lines past it are dropped, never waited on. */
const STDOUT_BACKLOG_BYTES = 8 * 1024 * 1024;

/**
 * Structured JSON logs on stdout (or `destination`). Every logged object and message passes
 * through `redactSecrets`, so a token that slips into a log line is masked, not written.
 *
 * Stdout is written through `process.stdout` (asynchronous on a pipe), never with pino's
 * synchronous writer: that one parks the main thread in `Atomics.wait` while a full pipe is not
 * read, and then no signal handler runs, so Ctrl-C and SIGTERM did nothing.
 */
export function createLogger(level: string, destination: DestinationStream = boundedStdout()): Logger {
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

function boundedStdout(): DestinationStream {
  return {
    write(line: string) {
      if (process.stdout.writableLength < STDOUT_BACKLOG_BYTES) process.stdout.write(line);
    },
  };
}

/** Resolves once stdout has taken every queued log line, or after `timeoutMs` (a stdout nobody reads). */
export function drainStdout(timeoutMs: number): Promise<void> {
  if (process.stdout.writableLength === 0) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    timer.unref();
    process.stdout.once('drain', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
