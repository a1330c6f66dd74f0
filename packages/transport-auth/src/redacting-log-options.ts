import { redactSecrets } from './redact-secrets.js';

/**
 * Logger options (pino's `formatters.log` and `hooks.logMethod` shape) that pass every logged
 * object and every message argument through {@link redactSecrets}, so a token that slips into
 * a log line is masked, never written. One definition for every runt process that logs.
 *
 * @example
 * const log = pino({ level: 'info', base: { service: 'runt-agent' }, ...redactingLogOptions });
 * log.info({ headers: { authorization: `Bearer ${token}` } }, `got ${token}`); // both masked
 */
export const redactingLogOptions = {
  formatters: {
    log: (object: Record<string, unknown>): Record<string, unknown> => redactSecrets(object),
  },
  hooks: {
    logMethod(this: unknown, args: unknown[], method: (...args: unknown[]) => void): void {
      method.apply(
        this,
        args.map((a) => redactSecrets(a)),
      );
    },
  },
};
