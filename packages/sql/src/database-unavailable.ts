/** Node socket errors that mean the database server cannot be reached right now. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
/** SQLSTATEs of a server going away or not taking connections: class 08, admin/crash shutdown, cannot connect now, too many connections. */
const SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);
/** What `pg` says when a connection dies under a query or the pool cannot get one. */
const MESSAGES =
  /Connection terminated|terminating connection|connection error|Client has encountered a connection error|timeout exceeded when trying to connect|Connection refused/i;

/**
 * True when `e` says the database is unreachable for now (a Postgres restart, a dropped
 * connection, a full server) rather than that the statement was wrong: callers answer
 * "try again later" (HTTP 503 + Retry-After) instead of a 500.
 *
 * @example
 * catch (e) { if (isDatabaseUnavailable(e)) return c.json(…, 503) }
 */
export function isDatabaseUnavailable(e: unknown): boolean {
  for (
    let cur = e, hops = 0;
    typeof cur === 'object' && cur !== null && hops < 5;
    cur = (cur as { cause?: unknown }).cause, hops++
  ) {
    const { code, message } = cur as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && (SOCKET_CODES.has(code) || code.startsWith('08') || SQLSTATES.has(code)))
      return true;
    if (typeof message === 'string' && MESSAGES.test(message)) return true;
    const errors = (cur as { errors?: unknown }).errors; // AggregateError from a dual-stack connect
    if (Array.isArray(errors) && errors.some((inner) => isDatabaseUnavailable(inner))) return true;
  }
  return false;
}
