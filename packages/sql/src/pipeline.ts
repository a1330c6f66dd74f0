import pg from 'pg';
import type { QueryResult, Statement } from './sql.js';

/** What node-postgres hands a submittable: the protocol writer of one connection. */
interface Connection {
  stream: { cork?(): void; uncork?(): void };
  parsedStatements: Record<string, string>;
  submittedNamedStatements: Record<string, string>;
  parse(q: { text: string; name: string }): void;
  bind(c: { portal: string; statement: string; values: unknown[]; valueMapper: unknown }): void;
  describe(m: { type: 'P'; name: string }): void;
  execute(c: { portal: string }): void;
  sync(): void;
  sendCopyFail(msg: string): void;
}

/** node-postgres' row reader (exported, untyped by @types/pg). */
interface RowReader {
  rows: unknown[];
  rowCount: number | null;
  addFields(fields: unknown[]): void;
  parseRow(fields: unknown[]): unknown;
  addRow(row: unknown): void;
  addCommandComplete(msg: unknown): void;
}
const internals = pg as unknown as {
  Result: new () => RowReader;
  utils: { prepareValue: (v: unknown) => unknown };
};

/** A column of a RowDescription message, as node-postgres parses it. */
interface Field {
  name: string;
  dataTypeID: number;
  format: string;
}

/** The rows of one statement text, read once: its columns, their type parsers and a row maker. */
interface Shape {
  fields: Field[];
  parsers: Array<(v: string) => unknown>;
  make: (parsers: Shape['parsers'], values: Array<string | null>) => unknown;
}

/** At most this many statement texts keep a shape (pipelines are fixed texts; a bound all the same). */
const MAX_SHAPES = 500;
const shapes = new Map<string, Shape>();

const sameFields = (a: Field[], b: Field[]) =>
  a.length === b.length &&
  a.every((f, i) => f.name === b[i]!.name && f.dataTypeID === b[i]!.dataTypeID && f.format === b[i]!.format);

/**
 * The shape of `text`'s rows described by `fields`: the one made before when the columns are the
 * same (a migration may change a `select *`), otherwise made now. Undefined — node-postgres' own
 * reading — for binary columns or a `__proto__` column. The row maker is one object literal per
 * shape, the columns in order (a duplicate name keeps its first place and its last value, as
 * node-postgres' rows do): node-postgres 8 built each statement's row template from a
 * prototype-less object (slow properties) and filled every row by keyed stores, which were
 * 6.5 % of the control plane's CPU on the Postgres drain (issue 9, docs/benchmarks.md). The
 * names are the database's column names, written as JSON string literals.
 */
function shapeOf(text: string, fields: Field[]): Shape | undefined {
  const known = shapes.get(text);
  if (known && sameFields(known.fields, fields)) return known;
  if (fields.some((f) => f.format === 'binary' || f.name === '__proto__')) return undefined;
  if (!known && shapes.size >= MAX_SHAPES) return undefined; // full: node-postgres' reading, not a row maker per result
  const body = fields
    .map((f, i) => `${JSON.stringify(f.name)}: v[${i}] === null ? null : p[${i}](v[${i}])`)
    .join(',\n');
  const shape: Shape = {
    fields: fields.map((f) => ({ name: f.name, dataTypeID: f.dataTypeID, format: f.format })),
    parsers: fields.map((f) => pg.types.getTypeParser(f.dataTypeID, 'text') as (v: string) => unknown),
    // eslint-disable-next-line @typescript-eslint/no-implied-eval -- column names as JSON literals, see above
    make: new Function('p', 'v', `'use strict';\nreturn {\n${body}\n};`) as Shape['make'],
  };
  shapes.set(text, shape);
  return shape;
}

/** node-postgres' row reader with a statement's rows made by its {@link Shape}. */
class ShapedResult extends internals.Result {
  constructor(private readonly shape: Shape) {
    super();
  }

  override addFields(fields: unknown[]): void {
    (this as unknown as { fields: unknown[] }).fields = fields;
  }

  override parseRow(values: unknown[]): unknown {
    return this.shape.make(this.shape.parsers, values as Array<string | null>);
  }
}

type Named = Statement & { name: string | undefined };

/** On a pipeline's error: how many of its statements had completed before it (see {@link committedBefore}). */
const STATEMENTS_DONE = Symbol('statementsDone');

/**
 * True when `e`, a pipeline's error, came after one of its `COMMIT`s completed: that much of
 * it is committed, so it must not be sent again whole.
 */
export function committedBefore(e: unknown, statements: readonly Statement[]): boolean {
  const done = (e as { [STATEMENTS_DONE]?: number } | null)?.[STATEMENTS_DONE] ?? 0;
  return statements.slice(0, done).some((s) => /^\s*commit\b/i.test(s.text));
}
type Callback = (err: Error | null, result?: QueryResult<unknown>) => void;

/**
 * Several statements sent as ONE round trip of the extended protocol: each statement's
 * Parse (only when this connection has not prepared its name yet), Bind, Describe and Execute,
 * then a single Sync. Until that Sync they run in one implicit transaction (committed at the
 * Sync, rolled back as a whole when one fails), and each statement takes its own snapshot
 * (read committed), as the statements of a simple query do, but with parameters and with
 * plans cached per connection for the named ones. A node-postgres "submittable": the client
 * hands it the connection and the backend's messages, in order.
 */
export class Pipeline {
  callback: Callback | undefined;
  #result: RowReader | undefined;
  #last: RowReader | undefined;
  readonly #done: RowReader[] = [];
  #failed = false;
  #arrivalError: Error | undefined;
  #parsed: Named[] = [];

  /** `answer`: the index of the statement whose rows it resolves with (default: the last). */
  constructor(
    private readonly statements: Named[],
    private readonly answer?: number,
  ) {}

  /** Sends the whole pipeline (corked: one write). */
  submit(connection: Connection): null {
    connection.stream.cork?.();
    try {
      for (const s of this.statements) {
        const name = s.name ?? '';
        if (!s.name || (!connection.parsedStatements[name] && !connection.submittedNamedStatements[name])) {
          connection.parse({ text: s.text, name });
          if (s.name) {
            connection.submittedNamedStatements[name] = s.text;
            this.#parsed.push(s);
          }
        }
        connection.bind({
          portal: '',
          statement: name,
          values: s.params ?? [],
          valueMapper: internals.utils.prepareValue,
        });
        connection.describe({ type: 'P', name: '' });
        connection.execute({ portal: '' });
      }
      connection.sync();
    } finally {
      connection.stream.uncork?.();
    }
    return null;
  }

  /** The statements this pipeline asked the connection to prepare (to forget them when it failed). */
  get parsed(): readonly Named[] {
    return this.#parsed;
  }

  handleRowDescription(msg: { fields: unknown[] }): void {
    const text = this.statements[this.#done.length]?.text;
    const shape = text === undefined ? undefined : shapeOf(text, msg.fields as Field[]);
    this.#result = shape ? new ShapedResult(shape) : new internals.Result();
    this.#result.addFields(msg.fields);
  }

  handleDataRow(msg: { fields: unknown[] }): void {
    const r = this.#result!;
    r.addRow(r.parseRow(msg.fields));
  }

  handleCommandComplete(msg: unknown, connection: Connection): void {
    void connection;
    const r = this.#result ?? new internals.Result();
    r.addCommandComplete(msg);
    this.#complete(r);
  }

  /** An empty statement is answered EmptyQueryResponse, not CommandComplete: no rows, and the results after it keep their places. */
  handleEmptyQuery(): void {
    this.#complete(new internals.Result());
  }

  #complete(r: RowReader): void {
    this.#last = r;
    this.#done.push(r);
    this.#result = undefined;
    const onArrival = this.statements[this.#done.length - 1]?.onArrival;
    if (!onArrival) return;
    // Inside node-postgres' message handler: a throw must not break the connection's parsing;
    // it fails the pipeline at its end instead.
    try {
      onArrival({ rows: r.rows, rowCount: r.rowCount ?? 0 });
    } catch (e) {
      this.#arrivalError ??= e as Error;
    }
  }

  handlePortalSuspended(): void {}

  handleCopyInResponse(connection: Connection): void {
    connection.sendCopyFail('No source stream defined');
  }

  handleCopyData(): void {}

  handleError(err: Error): void {
    if (this.#failed) return;
    this.#failed = true;
    this.callback?.(Object.assign(err, { [STATEMENTS_DONE]: this.#done.length }));
  }

  handleReadyForQuery(connection: Connection): void {
    if (this.#failed) return;
    for (const s of this.#parsed) {
      connection.parsedStatements[s.name!] = s.text;
      delete connection.submittedNamedStatements[s.name!];
    }
    if (this.#arrivalError) return void this.callback?.(this.#arrivalError);
    this.statements.forEach((s, i) =>
      s.onResult?.({ rows: this.#done[i]?.rows ?? [], rowCount: this.#done[i]?.rowCount ?? 0 }),
    );
    const r = this.answer === undefined ? this.#last : this.#done[this.answer];
    this.callback?.(null, { rows: r?.rows ?? [], rowCount: r?.rowCount ?? 0 });
  }
}

/**
 * Runs `statements` as one {@link Pipeline} on `client`. Rejects when one failed: nothing of
 * it committed, unless it holds a `COMMIT` that completed before ({@link committedBefore}). A connection whose pipeline failed after asking to prepare statements does not
 * know which of them it now holds, so the caller must not reuse it (`release(err)`).
 */
export function runPipeline<T>(
  client: pg.PoolClient,
  statements: Named[],
  answer?: number,
): Promise<QueryResult<T>> {
  return new Promise((resolve, reject) => {
    const p = new Pipeline(statements, answer);
    p.callback = (err, result) => (err ? reject(err) : resolve(result as QueryResult<T>));
    // A submittable: `query` returns it, not a promise; its callback settles this one.
    void client.query(p as unknown as pg.QueryConfig);
  });
}
