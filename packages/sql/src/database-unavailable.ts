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
/**
 * What `pg` says when a connection dies under a query or cannot be opened ("timeout expired":
 * a client's own connect timeout, as `openPostgres` sets it) or the pool cannot get one.
 */
const MESSAGES =
  /Connection terminated|terminating connection|connection error|Client has encountered a connection error|timeout exceeded when trying to connect|Connection refused|^timeout expired$/i;

/** `e` and the errors it wraps (`cause`), at most 5 deep: a driver's error wraps the socket's. */
function* causeChain(e: unknown): Generator<{ code?: unknown; message?: unknown; errors?: unknown }> {
  for (let cur = e, hops = 0; typeof cur === 'object' && cur !== null && hops < 5; hops++) {
    yield cur;
    cur = (cur as { cause?: unknown }).cause;
  }
}

/**
 * True when `e` says the database is unreachable for now (a Postgres restart, a dropped
 * connection, a full server) rather than that the statement was wrong: callers answer
 * "try again later" (HTTP 503 + Retry-After) instead of a 500.
 *
 * @example
 * catch (e) { if (isDatabaseUnavailable(e)) return c.json(…, 503) }
 */
export function isDatabaseUnavailable(e: unknown): boolean {
  for (const cur of causeChain(e)) {
    const { code, message } = cur;
    if (typeof code === 'string' && (SOCKET_CODES.has(code) || code.startsWith('08') || SQLSTATES.has(code)))
      return true;
    if (typeof message === 'string' && MESSAGES.test(message)) return true;
    const errors = cur.errors; // AggregateError from a dual-stack connect
    if (Array.isArray(errors) && errors.some((inner) => isDatabaseUnavailable(inner))) return true;
  }
  return false;
}

/** SQLSTATEs a server sends on an open connection as it ends it: admin shutdown, crash shutdown. */
const LOST_SQLSTATES = new Set(['57P01', '57P02']);
/** Socket errors of an open connection whose peer went away (not of a connect attempt). */
const LOST_SOCKET_CODES = new Set(['ECONNRESET', 'EPIPE']);
/**
 * What `pg` says when a connection that was open dies (not "…due to connection timeout": that
 * one never opened).
 */
const LOST_MESSAGES =
  /Connection terminated unexpectedly|terminating connection|Client has encountered a connection error/i;

/**
 * True when `e` says an already-open connection died under its statement (a restart's admin
 * shutdown, a reset socket): such a failure comes at once, and a pool drops that connection,
 * so asking again at once is cheap and may get a live one. False for a connection that could
 * not be opened (refused, timed out, unreachable: asking again at once would wait as long
 * again) and for anything {@link isDatabaseUnavailable} rejects.
 *
 * @example
 * catch (e) { if (isConnectionLost(e) && tries < POOL_MAX + 1) continue; throw e }
 */
export function isConnectionLost(e: unknown): boolean {
  for (const cur of causeChain(e)) {
    const { code, message } = cur;
    if (typeof code === 'string' && (LOST_SQLSTATES.has(code) || LOST_SOCKET_CODES.has(code))) return true;
    if (typeof message === 'string' && LOST_MESSAGES.test(message)) return true;
  }
  return false;
}
