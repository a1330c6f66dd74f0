/** When PGlite's tables are vacuumed and analysed (see {@link TableUpkeep}). */
export interface UpkeepOptions {
  /**
   * Least time between two looks at the tables' counters (ms, default 10,000; Postgres's
   * autovacuum looks every 60 s). Every ANALYZE makes the statements prepared on the table be
   * planned again, and more often than every 10 s cost more than it saved (docs/benchmarks.md,
   * _PGlite upkeep_).
   */
  checkIntervalMs?: number;
  /** A table is vacuumed once its dead rows pass `vacuumThreshold + vacuumScaleFactor × its rows` (defaults 50 and 0.2, autovacuum's). */
  vacuumThreshold?: number;
  vacuumScaleFactor?: number;
  /** … or once rows inserted since its last vacuum pass `insertThreshold + insertScaleFactor × its rows` (1,000 and 0.2). */
  insertThreshold?: number;
  insertScaleFactor?: number;
  /** A table is analysed once rows changed since its last analyse pass `analyzeThreshold + analyzeScaleFactor × its rows` (50 and 0.1). */
  analyzeThreshold?: number;
  analyzeScaleFactor?: number;
  /**
   * The statistics target of the upkeep's ANALYZE (default 10: a sample of 3,000 rows and 10
   * most common values per column, where Postgres's default 100 samples 30,000). What a
   * planner needs from a queue table — its size and how its rows spread over a few statuses —
   * fits; analysing every column of `runs` at 10,000–20,000 rows took 26–250 ms at 100 (load 6).
   */
  statisticsTarget?: number;
  /**
   * The most of the connection's time the upkeep takes: after a look and its statements took
   * `t` ms, the next look waits at least `t / maxShare` (default 0.05: 5 %).
   */
  maxShare?: number;
  /** Told about every VACUUM or ANALYZE run (metrics, tests, the bench). */
  onUpkeep?: (done: UpkeepDone) => void;
  /** Told when a look or a VACUUM failed (the next look tries again). */
  onError?: (err: unknown) => void;
  /** The clock (tests). */
  now?: () => number;
}

/** One VACUUM or ANALYZE that ran. */
export interface UpkeepDone {
  /** The table, schema-qualified and quoted as it was sent. */
  table: string;
  /** `vacuum analyze`, `vacuum` or `analyze`. */
  action: 'vacuum analyze' | 'vacuum' | 'analyze';
  /** What the statistics said when it was decided. */
  rows: number;
  deadRows: number;
  changedSinceAnalyze: number;
  /** How long the statement held the connection (ms). */
  ms: number;
}

/** One table's counters as the look reads them. */
export interface TableCounters {
  table: string;
  rows: number;
  dead: number;
  insertedSinceVacuum: number;
  changedSinceAnalyze: number;
  /** Transactions since the table's oldest unfrozen row (`age(relfrozenxid)`). */
  xidAge: number;
  /** `autovacuum_freeze_max_age`: older than this, the table is vacuumed whatever its counters say. */
  freezeMaxAge: number;
  /** Its indexed columns, quoted and comma-separated (null: none). */
  columns: string | null;
}

// The user tables' counters (PGlite's statistics; flushed just before by
// `pg_stat_force_next_flush()`, sent as its own statement: the flush happens between statements).
// `reltuples` is -1 for a table never vacuumed or analysed: the live count stands in then.
const COUNTERS_SQL = `
select format('%I.%I', s.schemaname, s.relname) as "table",
       greatest(c.reltuples, s.n_live_tup, 0)::float8 as rows, s.n_dead_tup::float8 as dead,
       s.n_ins_since_vacuum::float8 as "insertedSinceVacuum", s.n_mod_since_analyze::float8 as "changedSinceAnalyze",
       age(c.relfrozenxid)::float8 as "xidAge", current_setting('autovacuum_freeze_max_age')::float8 as "freezeMaxAge",
       (select string_agg(distinct quote_ident(a.attname), ', ') from pg_index i
          join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey) and a.attnum > 0
         where i.indrelid = s.relid) as columns
  from pg_stat_user_tables s join pg_class c on c.oid = s.relid
 order by s.n_dead_tup desc`;

/** How the upkeep reaches the database: each call one statement, alone on the connection. */
export interface UpkeepConnection {
  query<T>(text: string): Promise<{ rows: T[] }>;
}

/**
 * Autovacuum for PGlite. PGlite runs Postgres as a single-user backend: no autovacuum launcher,
 * so without this nothing ever vacuums or analyses its tables. A queue table such as `runs`
 * then keeps every dead version of every row in every index (a status change is a non-HOT
 * update), so the statements that find the ~50 live runs of a status walk thousands of dead
 * index entries; the planner never learns a table's real contents (it estimated 18 queued runs
 * where 2,989–4,645 were, and hashed them all); and a long-lived embedded control plane's
 * tables and indexes only grow, up to the shutdown Postgres forces before transaction-id
 * wraparound (no VACUUM ever freezes a row).
 *
 * Between statements, at most once per `checkIntervalMs` and only while statements are being
 * sent, `maybe()` queues a look at `pg_stat_user_tables` (after `pg_stat_force_next_flush()`)
 * and decides per table with autovacuum's own rules and defaults: VACUUM when the dead rows pass
 * `50 + 0.2 × rows` (or the rows inserted since its last vacuum `1,000 + 0.2 × rows`, or its
 * oldest unfrozen row is older than `autovacuum_freeze_max_age`), ANALYZE when the rows changed
 * since its last analyse pass `50 + 0.1 × rows`; both in one `VACUUM (ANALYZE)` when both are
 * due. Each table's statement runs alone, on the one connection, in its turn among the queued
 * statements (`run` is the normal lane of the connection's gate), so a lease renewal waits at
 * most for the one statement running. A statement prepared before the ANALYZE is planned again
 * at its next use (Postgres invalidates plans whose tables' statistics changed). ANALYZE reads
 * only the columns some index holds (those the hot statements filter, join and sort on; a
 * sample of `run_events`' JSON payloads cost 40–470 ms and no plan reads them), at a statistics
 * target of 10 (`statisticsTarget`); the table's size (`reltuples`, what the planner scales every
 * estimate by) is updated by any ANALYZE. And the upkeep takes at most 5 % of the
 * connection's time (`maxShare`): the next look waits 20 times what the last one took.
 *
 * @example
 * const upkeep = new TableUpkeep((fn) => gate.run('normal', () => fn(conn)));
 * // after every statement: upkeep.maybe();
 */
export class TableUpkeep {
  readonly #o: Required<Omit<UpkeepOptions, 'onUpkeep' | 'onError' | 'now'>> &
    Pick<UpkeepOptions, 'onUpkeep' | 'onError'> & { now: () => number };
  readonly #run: <T>(fn: (conn: UpkeepConnection) => Promise<T>) => Promise<T>;
  /** When the next look may be queued. */
  #next: number;
  /** Time the last look and its statements held the connection (ms). */
  #spent = 0;
  #busy = false;
  #closed = false;
  /** The look or statement holding the connection now, settled (never rejects). */
  #current: Promise<unknown> = Promise.resolve();

  /** `run` runs `fn` alone on the connection, in its turn (never inside a transaction). */
  constructor(run: <T>(fn: (conn: UpkeepConnection) => Promise<T>) => Promise<T>, opts: UpkeepOptions = {}) {
    this.#o = {
      checkIntervalMs: 10_000,
      vacuumThreshold: 50,
      vacuumScaleFactor: 0.2,
      insertThreshold: 1_000,
      insertScaleFactor: 0.2,
      analyzeThreshold: 50,
      analyzeScaleFactor: 0.1,
      statisticsTarget: 10,
      maxShare: 0.05,
      now: Date.now,
      ...opts,
    };
    this.#run = run;
    this.#next = this.#o.now() + this.#o.checkIntervalMs;
  }

  /** Call after a statement: queues a look when one is due and none is queued or running. */
  maybe(): void {
    if (this.#busy || this.#closed) return;
    if (this.#o.now() < this.#next) return;
    this.#busy = true;
    this.#spent = 0;
    this.#look()
      .catch((e: unknown) => {
        if (!this.#closed) this.#o.onError?.(e);
      })
      .finally(() => {
        this.#busy = false;
        this.#next = this.#o.now() + Math.max(this.#o.checkIntervalMs, this.#spent / this.#o.maxShare);
      });
  }

  /** No more looks or upkeep statements; resolves once the one running (if any) has finished. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#current;
  }

  /** What is due for one table's counters, or undefined. */
  due(t: TableCounters): UpkeepDone['action'] | undefined {
    const o = this.#o;
    const vacuum =
      t.dead > o.vacuumThreshold + o.vacuumScaleFactor * t.rows ||
      t.insertedSinceVacuum > o.insertThreshold + o.insertScaleFactor * t.rows ||
      t.xidAge > t.freezeMaxAge;
    const analyze = t.changedSinceAnalyze > o.analyzeThreshold + o.analyzeScaleFactor * t.rows;
    return vacuum && analyze ? 'vacuum analyze' : vacuum ? 'vacuum' : analyze ? 'analyze' : undefined;
  }

  /** `fn` in its turn on the connection, as {@link close} can wait for it. */
  #turn<T>(fn: (conn: UpkeepConnection) => Promise<T>): Promise<T> {
    return this.#run((conn) => {
      const p = fn(conn);
      this.#current = p.catch(() => undefined);
      return p;
    });
  }

  async #look(): Promise<void> {
    const tables = await this.#turn(async (conn) => {
      if (this.#closed) return [];
      const started = this.#o.now();
      await conn.query('select pg_stat_force_next_flush()');
      const rows = (await conn.query<TableCounters>(COUNTERS_SQL)).rows;
      this.#spent += this.#o.now() - started;
      return rows;
    });
    for (const t of tables) {
      const action = this.due(t);
      if (!action) continue;
      // Each table in its own turn: queued statements run between two tables' upkeep.
      await this.#turn(async (conn) => {
        if (this.#closed) return;
        const started = performance.now();
        const clock = this.#o.now();
        const analyze = action !== 'vacuum';
        if (analyze)
          await conn.query(`set default_statistics_target = ${Math.trunc(this.#o.statisticsTarget)}`);
        try {
          const columns = analyze && t.columns ? ` (${t.columns})` : '';
          await conn.query(
            `${action === 'vacuum analyze' ? 'vacuum (analyze)' : action} ${t.table}${columns}`,
          );
        } finally {
          if (analyze) await conn.query('reset default_statistics_target');
        }
        const ms = performance.now() - started;
        this.#spent += this.#o.now() - clock;
        this.#o.onUpkeep?.({
          table: t.table,
          action,
          rows: t.rows,
          deadRows: t.dead,
          changedSinceAnalyze: t.changedSinceAnalyze,
          ms,
        });
      });
    }
  }
}
