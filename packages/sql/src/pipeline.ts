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
  flush(): void;
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

type Named = Statement & { name: string | undefined };
type Callback = (err: Error | null, result?: QueryResult<unknown>) => void;

/**
 * Several statements sent as ONE round trip of the extended protocol: each statement's
 * Parse (only when this connection has not prepared its name yet), Bind, Describe and Execute
 * (and a Flush after a statement with `sendAhead`), then a single Sync. Until that Sync they run in one implicit transaction (committed at the
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
        if (s.sendAhead) connection.flush();
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
    this.#result = new internals.Result();
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

  handleEmptyQuery(): void {}

  handlePortalSuspended(): void {}

  handleCopyInResponse(connection: Connection): void {
    connection.sendCopyFail('No source stream defined');
  }

  handleCopyData(): void {}

  handleError(err: Error): void {
    if (this.#failed) return;
    this.#failed = true;
    this.callback?.(err);
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
 * it committed. A connection whose pipeline failed after asking to prepare statements does not
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
