import pg from 'pg';
import { isConnectionLost } from './database-unavailable.js';
import { committedBefore, runPipeline } from './pipeline.js';
import { parseTimestamptz } from './timestamptz.js';
import {
  beginRidesWith,
  type Database,
  type Listener,
  type QueryResult,
  type Queryable,
  type Statement,
} from './sql.js';

export interface OpenPostgresOptions {
  /** `postgres://user@host:port/db` */
  url: string;
  /** Pool size (default {@link POOL_MAX}). */
  max?: number;
  /** Size of the priority lane's own pool (default 2; see `Database.priority`). */
  priorityMax?: number;
  /** How long a pooled connection may sit idle before it is closed, in ms (default {@link POOL_IDLE_MS}). */
  idleMs?: number;
  /** How long opening a connection may take before it fails, in ms (default {@link POOL_CONNECT_MS}). */
  connectMs?: number;
}

/**
 * How long a pooled connection may sit idle before it is closed (node-postgres' default is 10 s).
 * A connection opened again costs the request that waits for it a server process to start and
 * then, on its first statements, cold catalog caches, a Parse of each prepared statement and
 * five custom plans before Postgres settles on a generic one: measured on the replicas
 * latency bench (issue 10, 2026-12-01), a submit's message on a connection's first 5 uses
 * took 14 ms at the p50 against 2.6 ms on a warm one at load ~11, and they were 9 of its 22
 * slowest — after any 10 s without a second concurrent statement (a replica between bursts, or
 * serving one submit at a time) its extra connections were gone. Ten minutes keeps them across
 * such lulls; TCP keepalive probes ({@link POOL_KEEPALIVE_MS}) keep a NAT or firewall from
 * dropping one silently meanwhile.
 */
export const POOL_IDLE_MS = 600_000;
/**
 * How long opening a connection (pooled, or the LISTEN one) may take before it fails, in ms
 * (node-postgres' default is none; 0: no bound). A server that refuses is known at once, but a
 * host gone silent — or a proxy or half-dead server that accepts the TCP connection and never
 * answers the startup — left the connect, and the request waiting for it, hanging until the OS
 * gave up (an accepted connection: never). Then it fails with "timeout expired"
 * (`isDatabaseUnavailable`: the control plane answers 503, `isConnectionLost` false: not asked
 * again at once). A connect takes ~150–210 ms on a loaded test machine (docs/reliability.md,
 * "A flush after a restart"); 5 s leaves room for a busy server and bounds a request's wait
 * for a new connection well below a client's or a load balancer's timeout.
 *
 * It bounds the connect only, never the wait for a free pooled connection: it is set on each
 * client ({@link boundedConnect}), not as the pool's `connectionTimeoutMillis`, which in
 * pg-pool also times out a request queued behind busy connections ("timeout exceeded when
 * trying to connect") — a 503 under mere load, and for a keyless submit whose insert had
 * committed, a retried (duplicate) run.
 */
export const POOL_CONNECT_MS = 5_000;
/** Idle time before the first TCP keepalive probe of a pooled connection (the OS default is 2 h). */
export const POOL_KEEPALIVE_MS = 60_000;
/**
 * Default size of a database's main pool: also how many dead connections it can hand out in a
 * row after a restart before it opens a new one (a caller asking again at once on
 * `isConnectionLost` needs at most this many + 1 tries).
 */
export const POOL_MAX = 10;

// int8 (bigint) as JS number: our counters (fencing tokens, seq) stay far below 2^53.
pg.types.setTypeParser(20, (v) => Number(v));
// timestamptz read by position in a UTC session (the rest as before): see parseTimestamptz.
pg.types.setTypeParser(1184, parseTimestamptz);

/**
 * Opens a pooled connection to a Postgres server. `db.priority` has its own small pool
 * (`priorityMax`, default 2, connected on first use), so lease renewals never wait for a
 * connection behind the work they protect.
 *
 * @example
 * const db = await openPostgres({ url: 'postgres://postgres@127.0.0.1:5432/test' });
 */
export async function openPostgres(opts: OpenPostgresOptions): Promise<Database> {
  const connectMs = opts.connectMs ?? POOL_CONNECT_MS;
  const kept = {
    // Every pooled session in UTC, whatever the server's or database's default, so timestamptz
    // text comes back as `…+00`, the form parseTimestamptz reads by position (any other zone is
    // still parsed right, only slower). A startup parameter: no extra round trip per connection.
    // Nothing in our SQL depends on the session zone (the one to_char says `at time zone 'UTC'`);
    // PGlite's session is UTC already. An `options` in the URL replaces this one.
    options: '-c TimeZone=UTC',
    idleTimeoutMillis: opts.idleMs ?? POOL_IDLE_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: POOL_KEEPALIVE_MS,
    // Not the pool's connectionTimeoutMillis: that one also bounds the wait in its queue.
    Client: boundedConnect(connectMs),
  };
  const pool = new pg.Pool({ connectionString: opts.url, max: opts.max ?? POOL_MAX, ...kept });
  const priorityPool = new pg.Pool({ connectionString: opts.url, max: opts.priorityMax ?? 2, ...kept });
  // A dropped idle connection must not crash the process; the next query gets a fresh one.
  pool.on('error', () => {});
  priorityPool.on('error', () => {});
  const client = await pool.connect(); // fail fast on a bad URL
  client.release();
  const listeners = new Set<Listener>();
  const listen = makeListen(opts.url, listeners, connectMs);
  const close = async () => {
    await Promise.all([...listeners].map((l) => l.close()));
    await Promise.all([pool.end(), priorityPool.end()]);
  };
  const priority: Database = {
    ...lane(priorityPool),
    listen,
    close,
    get priority() {
      return priority;
    },
  };
  return { ...lane(pool), listen, close, priority };
}

/**
 * A `pg.Client` whose connect fails after `connectMs` (its own `connectionTimeoutMillis`): given
 * to a pool as its `Client`, it bounds opening a connection and nothing else
 * ({@link POOL_CONNECT_MS}).
 */
function boundedConnect(connectMs: number): typeof pg.Client {
  return class extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      super({
        ...(typeof config === 'string' ? { connectionString: config } : config),
        connectionTimeoutMillis: connectMs,
      });
    }
  };
}

/** At most this many statement texts are prepared (named); the rest are sent unnamed. */
export const MAX_PREPARED_STATEMENTS = 256;
/** Statement texts with parameters → their prepared statement's name (`runt_<n>`). */
const prepared = new Map<string, string>();
/** Texts a server refused to run prepared (a migration changed their result's row type): sent unnamed from then on. */
const unprepared = new Set<string>();

/**
 * The statement's name when it is sent prepared: every statement with parameters (the run
 * path's fixed texts), up to {@link MAX_PREPARED_STATEMENTS} distinct texts. A connection
 * parses and plans a named statement once; later executions send only its name and the
 * parameters (the control plane's long CTEs are ~1–2 KB of text each, parsed and planned per
 * execution before; issue 9). Without parameters (the simple protocol: `BEGIN;…`, several
 * statements) it is never named.
 */
function nameOf(text: string, params: unknown[] | undefined, always = false): string | undefined {
  if ((!always && (!params || params.length === 0)) || unprepared.has(text)) return undefined;
  let name = prepared.get(text);
  if (name === undefined && prepared.size < MAX_PREPARED_STATEMENTS) {
    name = `runt_${prepared.size + 1}`;
    prepared.set(text, name);
  }
  return name;
}

/** Postgres refuses a prepared statement whose result's row type changed (`select *` after a migration added a column). */
const isStalePlan = (e: unknown) =>
  (e as { code?: string }).code === '0A000' &&
  /cached plan must not change result type/.test((e as Error).message ?? '');

const run = async <T>(
  q: pg.Pool | pg.PoolClient,
  text: string,
  params?: unknown[],
): Promise<QueryResult<T>> => {
  const name = nameOf(text, params);
  let all: pg.QueryResult | pg.QueryResult[];
  try {
    all = (await (name ? q.query({ name, text, values: params! }) : q.query(text, params as unknown[]))) as
      pg.QueryResult | pg.QueryResult[];
  } catch (e) {
    // Refused before it ran (the plan is checked before execution): run it unnamed instead,
    // now and from then on. Only outside a transaction: inside one the error aborted it.
    if (!name || !isStalePlan(e) || !(q instanceof pg.Pool)) {
      if (name && isStalePlan(e)) unprepared.add(text);
      throw e;
    }
    unprepared.add(text);
    all = (await q.query(text, params as unknown[])) as pg.QueryResult;
  }
  // Several `;`-separated statements without parameters (the simple query protocol) answer
  // with one result each: the caller gets the last one's.
  const r = Array.isArray(all) ? all[all.length - 1]! : all;
  return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
};

/** A pipeline's statements, each with its prepared statement's name (pipelines are fixed texts). */
const namedAll = (statements: Statement[]) =>
  statements.map((s) => ({ ...s, name: nameOf(s.text, s.params, true) }));

/**
 * A {@link Database.pipeline} on a pooled connection, every statement named (pipelines are
 * fixed texts). A failed pipeline's connection is dropped: it may hold some of the statements
 * the pipeline asked it to prepare and not others. A plan refused because a migration changed
 * a result's row type: the pipeline rolled back as a whole, so it is sent again unnamed —
 * unless one of its `COMMIT`s had completed before (what came before it stays committed: the
 * error is the answer). A connection lost: its server process is ended before this rejects
 * ({@link endServerProcess}), so the pipeline's outcome is final and can be read.
 */
async function pipelineOn<T>(pool: pg.Pool, statements: Statement[]): Promise<QueryResult<T>> {
  const named = namedAll(statements);
  const c = await pool.connect();
  // As in `transaction`: while checked out the pool no longer listens for the client's errors,
  // and a connection lost mid-pipeline emits one (the pipeline itself rejects): unheard, it
  // would end the process.
  const onError = () => {};
  c.on('error', onError);
  try {
    const out = await runPipeline<T>(c, named);
    c.off('error', onError);
    c.release();
    return out;
  } catch (e) {
    c.off('error', onError);
    c.release(e as Error);
    if (isConnectionLost(e)) {
      await endServerProcess(pool, (c as pg.PoolClient & { processID?: number | null }).processID);
      throw e;
    }
    if (!isStalePlan(e) || named.every((s) => s.name === undefined) || committedBefore(e, named)) throw e;
    for (const s of named) unprepared.add(s.text);
    return pipelineOn(pool, statements);
  }
}

/**
 * Ends the server process of a connection this side lost, and waits until it is gone: a cut
 * socket does not stop it, and it may still hold the rest of a pipeline in its input buffer —
 * its COMMIT too — and run it later (after waiting on a lock, say). Once it is gone what it
 * committed is final, so a read on another connection after this tells the lost pipeline's
 * outcome (a submit reads its run back). Best effort: a database that cannot be reached has
 * no process of it left to run anything either once it is back.
 */
async function endServerProcess(pool: pg.Pool, pid: number | null | undefined): Promise<void> {
  if (!pid) return;
  await pool.query('select pg_terminate_backend($1::int, $2::bigint)', [pid, END_LOST_PROCESS_WAIT_MS]).then(
    () => {},
    () => {},
  );
}

/** How long {@link endServerProcess} waits for a lost connection's server process to exit. */
const END_LOST_PROCESS_WAIT_MS = 5000;

/** Queries and transactions over one pool. */
function lane(pool: pg.Pool): Pick<Database, 'backend' | 'query' | 'transaction' | 'pipeline'> {
  return {
    backend: 'postgres',
    query: (text, params) => run(pool, text, params),
    pipeline: (statements) => pipelineOn(pool, statements),
    async transaction(fn) {
      const c = await pool.connect();
      // While a client is checked out the pool no longer listens for its errors: a connection
      // terminated mid-transaction (a server restart) would emit an unhandled 'error' and crash
      // the process. The failing query rejects on its own; the broken client is destroyed.
      let broken: Error | undefined;
      const onError = (err: Error) => {
        broken = err;
      };
      c.on('error', onError);
      // `BEGIN` waits for the first statement and rides with it when it can (one round trip
      // fewer; it takes no snapshot, so nothing is seen differently). A transaction that sends
      // nothing sends no `BEGIN` and no `COMMIT`.
      let begun = false;
      // `atCommit` statements go with the COMMIT (`…;COMMIT`, one round trip): if one fails,
      // the rest of that message is skipped and the transaction is rolled back below.
      const atCommit: string[] = [];
      // `commitWith` sent the COMMIT: nothing left to commit or roll back.
      let committed = false;
      try {
        const tx: Queryable = {
          query: async (text, params) => {
            if (begun) return run(c, text, params);
            begun = true;
            if (beginRidesWith(params)) return run(c, `BEGIN;\n${text}`);
            await c.query('BEGIN');
            return run(c, text, params);
          },
          atCommit: (text) => {
            atCommit.push(text);
          },
          // Part of the transaction: its BEGIN goes first when nothing was sent before.
          pipeline: async <T>(statements: Statement[]) => {
            const named = namedAll(statements);
            const first = !begun;
            begun = true;
            try {
              return await runPipeline<T>(c, first ? [{ text: 'BEGIN', name: undefined }, ...named] : named);
            } catch (e) {
              // The connection may hold some of the statements it was asked to prepare and not
              // others: it is not reused (the server rolls the transaction back as it closes).
              if (named.some((s) => s.name !== undefined)) broken ??= e as Error;
              if (isStalePlan(e)) for (const s of named) unprepared.add(s.text);
              throw e;
            }
          },
          // The last statement, the atCommit ones and COMMIT: one pipeline, one round trip.
          commitWith: async <T>(statement: Statement) => {
            const named = namedAll([statement]);
            const head = begun ? [] : [{ text: 'BEGIN', name: undefined }];
            begun = true;
            const tail = [
              ...atCommit.map((text) => ({ text, name: undefined })),
              { text: 'COMMIT', name: undefined },
            ];
            atCommit.length = 0;
            try {
              const out = await runPipeline<T>(c, [...head, ...named, ...tail], head.length);
              committed = true;
              return out;
            } catch (e) {
              if (named.some((s) => s.name !== undefined)) broken ??= e as Error;
              if (isStalePlan(e)) for (const s of named) unprepared.add(s.text);
              throw e;
            }
          },
        };
        const out = await fn(tx);
        if (committed) return out;
        if (atCommit.length > 0) {
          const tail = `${atCommit.join(';\n')};\nCOMMIT`;
          const opened = begun;
          begun = true; // a failure after its BEGIN leaves a transaction to roll back
          await run(c, opened ? tail : `BEGIN;\n${tail}`);
        } else if (begun) await c.query('COMMIT');
        return out;
      } catch (e) {
        if (begun && !broken && !committed) await c.query('ROLLBACK').catch(() => {});
        throw e;
      } finally {
        c.off('error', onError);
        c.release(broken);
      }
    },
  };
}

function makeListen(
  url: string,
  listeners: Set<Listener>,
  connectMs: number,
): NonNullable<Database['listen']> {
  return async (channel, onMessage, onConnectionLost) => {
    const channels = new Set(typeof channel === 'string' ? [channel] : channel);
    // keepAlive: a silently dead peer is noticed (and reported as lost) instead of hanging.
    const client = new pg.Client({
      connectionString: url,
      keepAlive: true,
      connectionTimeoutMillis: connectMs,
    });
    let started = false;
    let closed = false;
    let lost = false;
    const lose = (err?: Error) => {
      if (closed || lost) return;
      lost = true;
      if (!started) return; // listen() rejects instead
      listeners.delete(listener);
      void client.end().catch(() => {});
      onConnectionLost(err);
    };
    const listener: Listener = {
      async close() {
        if (closed) return;
        closed = true;
        listeners.delete(listener);
        await client.end().catch(() => {});
      },
    };
    client.on('error', (err) => lose(err));
    client.on('end', () => lose(new Error('LISTEN connection ended')));
    client.on('notification', (n) => {
      if (!closed && !lost && channels.has(n.channel)) onMessage(n.payload ?? '', n.channel);
    });
    try {
      await client.connect();
      // One simple-protocol message for every channel: one round trip, one server process.
      await client.query([...channels].map((c) => `LISTEN ${client.escapeIdentifier(c)}`).join('; '));
    } catch (e) {
      closed = true;
      await client.end().catch(() => {});
      throw e;
    }
    if (lost) {
      closed = true;
      await client.end().catch(() => {});
      throw new Error('LISTEN connection lost while starting');
    }
    started = true;
    listeners.add(listener);
    return listener;
  };
}
