import { sqlLiteral } from './sql.js';

export interface PlanCacheOptions {
  /** Prepared statements kept at once (least recently used dropped first; default 64). */
  maxStatements?: number;
  /** Executions of one prepared statement before it is prepared again (default 256). */
  maxUses?: number;
  /** Age of a prepared statement after which it is prepared again (ms, default 10,000). */
  maxAgeMs?: number;
  /**
   * False: statements are prepared without the row locks that end their SELECTs
   * ({@link withoutRowLocks}). Only where one connection runs every statement, one transaction
   * at a time, as `openPglite`'s does; anywhere else the locks keep writers apart (default true).
   */
  rowLocks?: boolean;
  /** The clock (tests). */
  now?: () => number;
}

/** What to send for one statement: `prepare` first when set (its own message), then `execute`. */
export interface CachedStatement {
  /** `PREPARE …` to send (alone) before `execute`, when the statement is not prepared (any more). */
  prepare?: string;
  /** Call when `prepare` failed: nothing was prepared under its name. */
  prepareFailed(): void;
  /** `EXECUTE name(args)`: the statement with its parameters as literals. */
  execute: string;
}

interface Entry {
  name: string;
  prepared: boolean;
  since: number;
  uses: number;
}

// One optimizable statement (what PREPARE takes); several statements or a utility one go as sent.
const PREPARABLE = /^\s*(with|select|insert|update|delete|values)\b/i;

// A row-locking clause closing a SELECT (`for update`, `for no key update of r skip locked`, …),
// where the SELECT ends: before a `)`, or at the end of the text.
const ROW_LOCK =
  /\s+for\s+(?:no\s+key\s+update|update|key\s+share|share)(?:\s+of\s+\w+(?:\s*,\s*\w+)*)?(?:\s+skip\s+locked|\s+nowait)?(?=\s*(?:\)|$))/gi;

/**
 * `text` without its row locks (`select … for update`, `for no key update of r skip locked`, …):
 * what PGlite prepares. A row lock only keeps other transactions off the row, and PGlite has
 * none: one connection, one transaction at a time (`openPglite`'s gate). Taking it still costs
 * the one thread a write of the row's header and a WAL record per row locked — the lock order's
 * steps, the page's `skip locked`, the lease sweep's — ~0.04 ms of the control plane's CPU per
 * drained run (docs/runs.md, _Row locks on PGlite_). The statements stay one text for both
 * stores, written for Postgres, where the locks are what keeps writers apart; only a clause
 * that ends its SELECT is dropped (one followed by `limit` stays, and is only dearer).
 *
 * @example
 * withoutRowLocks('select id from runs where id = $1 for update'); // 'select id from runs where id = $1'
 */
export function withoutRowLocks(text: string): string {
  return text.replace(ROW_LOCK, '');
}

/**
 * Plans kept across calls on PGlite's one connection. PGlite's `query` sends every statement
 * as an unnamed one, which the server parses and plans again each time; the control plane's hot
 * statements (a scheduling page, the batched claims and reports) spend more time being planned
 * than executed there (the page: 2–16 ms of planning for 0.4–5 ms of execution, measured with
 * EXPLAIN ANALYZE in a burst). A statement text seen a second time is `PREPARE`d under a name
 * of its own, and run from then on as `EXECUTE name(<its parameters as literals>)`, planned once
 * (a statement with parameters: the server's plan cache takes its generic plan when it costs no
 * more than the custom ones).
 *
 * PGlite has no autovacuum: `TableUpkeep` (upkeep.ts) analyses a table once 10 % of it changed,
 * and Postgres plans a prepared statement again once a table it reads was analysed. Between two
 * ANALYZEs (or with the upkeep off) the planner sizes tables from their page counts at planning
 * time, and a plan made when a table was small must not outlive its growth: so a prepared
 * statement is also prepared again after `maxUses` executions or `maxAgeMs`, whichever comes
 * first; the old one is dropped with `DEALLOCATE`.
 *
 * Only statements whose parameters are all strings, numbers, booleans, bigints or null are
 * cached (they become SQL literals, read by the same input functions the parameters would be);
 * any other (an array, a Date, bytes) goes as sent. Prepared statements are not transactional:
 * one prepared inside a transaction that rolls back stays prepared.
 *
 * @example
 * const c = new PlanCache();
 * const s = c.statement('select * from runs where id = $1', ['run_1']); // undefined: first sighting
 */
export class PlanCache {
  readonly #o: Required<Omit<PlanCacheOptions, 'now'>> & { now: () => number };
  readonly #entries = new Map<string, Entry>();
  /** Texts seen once (a one-off text is never prepared); cleared when it grows past its bound. */
  readonly #seen = new Set<string>();
  /** Names of replaced or dropped statements still to `DEALLOCATE` (sent with the next `PREPARE`). */
  #retired: string[] = [];
  #next = 0;

  constructor(opts: PlanCacheOptions = {}) {
    this.#o = { maxStatements: 64, maxUses: 256, maxAgeMs: 10_000, rowLocks: true, now: Date.now, ...opts };
  }

  /** What to send for `text` with `params`, or undefined: send it as is. */
  statement(text: string, params: readonly unknown[] | undefined): CachedStatement | undefined {
    if (text.includes(';') || !PREPARABLE.test(text)) return undefined;
    const args: string[] = [];
    for (const v of params ?? []) {
      const lit = literal(v);
      if (lit === undefined) return undefined;
      args.push(lit);
    }
    let e = this.#entries.get(text);
    if (!e) {
      if (!this.#seen.has(text)) {
        if (this.#seen.size >= this.#o.maxStatements * 8) this.#seen.clear();
        this.#seen.add(text);
        return undefined;
      }
      this.#seen.delete(text);
      e = { name: '', prepared: false, since: 0, uses: 0 };
    }
    // Most recently used last: the first entry is the one to drop.
    this.#entries.delete(text);
    this.#entries.set(text, e);
    const now = this.#o.now();
    let prepare: string | undefined;
    if (!e.prepared || e.uses >= this.#o.maxUses || now - e.since >= this.#o.maxAgeMs) {
      if (e.prepared) this.#retired.push(e.name);
      e.name = `runt_plan_${++this.#next}`;
      e.prepared = true;
      e.since = now;
      e.uses = 0;
      this.#evict();
      // DEALLOCATE is not transactional either: done even if the PREPARE after it fails.
      const drop = this.#retired.map((n) => `deallocate ${n}; `).join('');
      this.#retired = [];
      prepare = `${drop}prepare ${e.name} as ${this.#o.rowLocks ? text : withoutRowLocks(text)}`;
    }
    e.uses++;
    const entry = e;
    return {
      ...(prepare ? { prepare } : {}),
      prepareFailed: () => {
        // Nothing was prepared under this name, and what it was to drop may not have been: the
        // entry goes (a statement that keeps failing to prepare costs a PREPARE each time, as
        // its plain query would have failed each time), the names to drop are forgotten (a
        // DEALLOCATE of an unknown name would fail every later PREPARE).
        if (this.#entries.get(text) === entry) this.#entries.delete(text);
      },
      execute: `execute ${e.name}${args.length > 0 ? `(${args.join(', ')})` : ''}`,
    };
  }

  /** Statements prepared now (tests, metrics). */
  get size(): number {
    return this.#entries.size;
  }

  #evict(): void {
    while (this.#entries.size > this.#o.maxStatements) {
      const [text, old] = this.#entries.entries().next().value as [string, Entry];
      this.#entries.delete(text);
      if (old.prepared) this.#retired.push(old.name);
    }
  }
}

/** A parameter as an SQL literal of unknown type (coerced to the parameter's), or undefined. */
function literal(v: unknown): string | undefined {
  if (v === null || v === undefined) return 'NULL';
  switch (typeof v) {
    case 'string':
      return v.includes('\u0000') ? undefined : sqlLiteral(v);
    case 'number':
      return Number.isFinite(v) ? `'${v}'` : undefined;
    case 'bigint':
      return `'${v}'`;
    case 'boolean':
      return v ? `'t'` : `'f'`;
    default:
      return undefined;
  }
}
