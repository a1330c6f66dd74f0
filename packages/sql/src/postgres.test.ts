import { createServer, type Socket } from 'node:net';
import pg from 'pg';
import { describe, expect, it, vi } from 'vitest';
import { isConnectionLost, isDatabaseUnavailable } from './database-unavailable.js';
import { createTestDatabase } from './testing.js';
import { openPostgres } from './postgres.js';

describe('openPostgres', () => {
  it('opens every pooled session in UTC, whatever the database default (timestamptz fast path)', async () => {
    const t = await createTestDatabase('postgres');
    const name = new URL(t.url!).pathname.slice(1);
    await t.db.query(`alter database ${name} set timezone = 'Asia/Kolkata'`);
    const db = await openPostgres({ url: t.url! });
    try {
      for (const lane of [db, db.priority]) {
        const r = await lane.query<{ TimeZone: string }>('show timezone');
        expect(r.rows[0]!.TimeZone).toBe('UTC');
      }
    } finally {
      await db.close();
      await t.dispose();
    }
  });

  it('survives a connection terminated inside a transaction (as a server restart does)', async () => {
    const t = await createTestDatabase('postgres');
    try {
      const err = await t.db
        .transaction(async (tx) => {
          const me = await tx.query<{ pid: number }>('select pg_backend_pid() as pid');
          await t.db.query('select pg_terminate_backend($1)', [me.rows[0]!.pid]);
          // Give the socket time to close while the client is still checked out: without a
          // listener its 'error' event is an uncaught exception that ends the process.
          await new Promise((r) => setTimeout(r, 200));
          return tx.query('select 1');
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      // The pool threw the broken client away: the next transaction works.
      const ok = await t.db.transaction((tx) => tx.query<{ one: number }>('select 1 as one'));
      expect(ok.rows[0]?.one).toBe(1);
    } finally {
      await t.dispose();
    }
  });

  it('bounds opening a connection only: a query queued behind busy connections longer than connectMs still runs', async () => {
    const t = await createTestDatabase('postgres');
    const connectMs = 500;
    const db = await openPostgres({ url: t.url!, max: 1, priorityMax: 1, connectMs });
    try {
      for (const lane of [db, db.priority]) {
        const busy = lane.query('select pg_sleep(1.5)'); // the lane's one connection, past the bound
        await new Promise((r) => setTimeout(r, 100)); // it has the connection
        const started = Date.now();
        const queued = await lane.query<{ one: number }>('select 1 as one'); // waits in the pool's queue
        expect(queued.rows).toEqual([{ one: 1 }]);
        expect(Date.now() - started).toBeGreaterThan(connectMs);
        await busy;
      }
    } finally {
      await db.close();
      await t.dispose();
    }
  });

  it('fails a connect to a host that accepts and never answers after connectMs, as unavailable and not lost', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((s) => void sockets.add(s.on('error', () => {})));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as { port: number }).port;
    try {
      const started = Date.now();
      const err = await openPostgres({ url: `postgres://x@127.0.0.1:${port}/x`, connectMs: 500 }).catch(
        (e: unknown) => e,
      );
      const tookMs = Date.now() - started;
      expect(sockets.size).toBeGreaterThan(0);
      expect(isDatabaseUnavailable(err)).toBe(true);
      expect(isConnectionLost(err)).toBe(false);
      expect(tookMs).toBeGreaterThanOrEqual(450);
      expect(tookMs).toBeLessThan(3_000);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  it('keeps an idle pooled connection past node-postgres’ 10 s default (no new server process, no cold plans)', async () => {
    const t = await createTestDatabase('postgres');
    const pid = async () =>
      (await t.db.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
    try {
      await pid(); // connected
      // The pool's idle timer is a setTimeout started when a connection goes back to the pool.
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      let first: number;
      try {
        first = await pid();
        vi.advanceTimersByTime(11_000);
      } finally {
        vi.useRealTimers();
      }
      await new Promise((r) => setTimeout(r, 50)); // a closed connection's end lands
      expect(await pid()).toBe(first);
    } finally {
      await t.dispose();
    }
  });

  it("sends a transaction's BEGIN with its first statement when that one has no parameters", async () => {
    const t = await createTestDatabase('postgres');
    // Every round trip to the server is one Client#query (the pool's too).
    const sent = vi.spyOn(pg.Client.prototype, 'query');
    try {
      const texts = () =>
        sent.mock.calls.map((c) => {
          const q = c[0] as unknown as string | { text: string };
          return typeof q === 'string' ? q : q.text;
        });
      // Parameter-less first statement: BEGIN rides with it, then the second and COMMIT.
      const out = await t.db.transaction(async (tx) => {
        const a = await tx.query<{ n: number; txid: string }>('select 1 as n, txid_current()::text as txid');
        const b = await tx.query<{ txid: string }>(
          'select txid_current()::text as txid where $1::int = 1',
          [1],
        );
        return { a: a.rows[0]!, b: b.rows[0]! };
      });
      expect(out.a.n).toBe(1);
      expect(out.a.txid).toBe(out.b.txid); // one transaction
      expect(texts()).toHaveLength(3);
      expect(texts()[0]).toMatch(/^BEGIN;\s*select 1 as n/);
      expect(texts()[2]).toBe('COMMIT');
      sent.mockClear();
      // A first statement with parameters: BEGIN is its own round trip.
      await t.db.transaction((tx) => tx.query('select $1::int as n', [1]));
      expect(texts()).toEqual(['BEGIN', 'select $1::int as n', 'COMMIT']);
      sent.mockClear();
      // Several statements without parameters: the last one's rows; a failure rolls back.
      const many = await t.db.query<{ n: number }>('select 1 as n; select 2 as n');
      expect(many.rows).toEqual([{ n: 2 }]);
      await t.db.query('create table rides (v int)');
      await expect(
        t.db.transaction(async (tx) => {
          await tx.query('insert into rides values (1)');
          await tx.query('select 1/0');
        }),
      ).rejects.toThrow(/division by zero/);
      expect((await t.db.query('select * from rides')).rows).toEqual([]);
      // atCommit statements go with the COMMIT; alone, with BEGIN too.
      sent.mockClear();
      await t.db.transaction(async (tx) => {
        await tx.query('select $1::int as n', [1]);
        tx.atCommit!("select 'x'");
        tx.atCommit!("select 'y'");
      });
      expect(texts()).toEqual(['BEGIN', 'select $1::int as n', "select 'x';\nselect 'y';\nCOMMIT"]);
      sent.mockClear();
      await t.db.transaction(async (tx) => tx.atCommit!("select 'z'"));
      expect(texts()).toEqual(["BEGIN;\nselect 'z';\nCOMMIT"]);
      // A transaction that sends nothing sends neither BEGIN nor COMMIT.
      sent.mockClear();
      await t.db.transaction(() => Promise.resolve());
      expect(texts()).toEqual([]);
    } finally {
      sent.mockRestore();
      await t.dispose();
    }
  });

  it('prepares statements with parameters once per connection, and runs one unnamed after a migration changed its row type', async () => {
    const t = await createTestDatabase('postgres');
    const sent = vi.spyOn(pg.Client.prototype, 'query');
    try {
      await t.db.query('create table prep_t (id int primary key, a text)');
      await t.db.query("insert into prep_t values (1, 'x')");
      const sel = 'select * from prep_t where id = $1';
      for (let i = 0; i < 3; i++) expect((await t.db.query(sel, [1])).rows).toEqual([{ id: 1, a: 'x' }]);
      const named = sent.mock.calls
        .map((c) => c[0] as unknown as string | { name?: string; text: string })
        .filter((q) => typeof q !== 'string' && q.text === sel);
      expect(named.length).toBe(3);
      expect(new Set(named.map((q) => (q as { name?: string }).name)).size).toBe(1);
      expect((named[0] as { name?: string }).name).toMatch(/^runt_\d+$/);
      // Parsed once on the server: one prepared statement of this text on this connection.
      const onServer = await t.db.transaction(async (tx) => {
        await tx.query(sel, [1]);
        return tx.query<{ n: number }>(
          'select count(*)::int as n from pg_prepared_statements where statement = $1',
          [sel],
        );
      });
      expect(onServer.rows[0]?.n).toBe(1);

      // A migration adds a column: Postgres refuses the prepared `select *`; it runs unnamed.
      await t.db.query('alter table prep_t add column b int');
      for (let i = 0; i < 3; i++)
        expect((await t.db.query(sel, [1])).rows).toEqual([{ id: 1, a: 'x', b: null }]);
      const last = sent.mock.calls.at(-1)![0] as unknown;
      expect(last).toBe(sel); // sent unnamed from then on
    } finally {
      sent.mockRestore();
      await t.dispose();
    }
  });
  it("reads a pipeline's rows as node-postgres reads a query's: every type, nulls, duplicate names in order, a changed row type", async () => {
    const t = await createTestDatabase('postgres');
    try {
      await t.db.query(
        'create table shape_t (id text primary key, n bigint, j jsonb, at timestamptz, b boolean, x text)',
      );
      await t.db.query(
        `insert into shape_t values ('a', 7, '{"k":[1]}', '2026-12-02 05:00:00.123+00', true, null), ('b', null, null, null, false, 'y')`,
      );
      const sel = 'select s.*, s.id as n2, s.x as id, $1::int as p from shape_t s order by s.id';
      const plain = await t.db.query(`${sel.replace('$1::int', '5::int')}`);
      // node-postgres' per-result setup (a template of every column) is not what reads them
      const Result = (pg as unknown as { Result: { prototype: { addFields(f: unknown[]): void } } }).Result;
      const setup = vi.spyOn(Result.prototype, 'addFields');
      for (let i = 0; i < 2; i++) {
        setup.mockClear();
        const piped = await t.db.pipeline!([{ text: sel, params: [5] }]);
        expect(setup).not.toHaveBeenCalled();
        expect(piped.rows).toEqual(plain.rows);
        // same keys in the same order (a duplicate name keeps its first place, its last value)
        expect(piped.rows.map((r) => Object.keys(r as object))).toEqual(
          plain.rows.map((r) => Object.keys(r as object)),
        );
        expect((piped.rows[0] as { id: unknown }).id).toBeNull();
        expect((piped.rows[0] as { at: Date }).at).toEqual(new Date('2026-12-02T05:00:00.123Z'));
      }
      // The row type of the same text changes (a column added under `select *`): read anew.
      await t.db.query('alter table shape_t add column z int default 3');
      const after = await t.db.pipeline!<{ z: number }>([{ text: sel, params: [5] }]);
      expect(after.rows.map((r) => r.z)).toEqual([3, 3]);
      setup.mockRestore();
    } finally {
      await t.dispose();
    }
  });

  it('does not send a pipeline again whole when its plan went stale after one of its COMMITs completed', async () => {
    const t = await createTestDatabase('postgres');
    try {
      await t.db.query('create table once_t (v int)');
      await t.db.query('create table once_shape (a int)');
      const run = (v: number) =>
        t.db.pipeline!([
          { text: 'BEGIN' },
          { text: 'insert into once_t values ($1)', params: [v] },
          { text: 'COMMIT' },
          { text: 'select * from once_shape' },
        ]);
      await run(1);
      await t.db.query('alter table once_shape add column b int');
      // The insert committed before the read's plan was found stale: sent again whole, it would
      // insert twice; the error is the answer.
      await expect(run(2)).rejects.toThrow(/cached plan must not change result type/);
      const rows = await t.db.query<{ v: number }>('select v from once_t order by v');
      expect(rows.rows).toEqual([{ v: 1 }, { v: 2 }]);
      // Before its COMMIT a stale plan still means nothing committed: sent again, unnamed.
      await t.db.query('alter table once_shape add column c int');
      const again = await t.db.pipeline!<{ c: number | null }>([
        { text: 'BEGIN' },
        { text: 'select * from once_shape' },
        { text: 'insert into once_t values ($1)', params: [3] },
        { text: 'COMMIT' },
      ]);
      expect(again.rowCount).toBe(0);
      expect((await t.db.query('select count(*)::int as n from once_t')).rows).toEqual([{ n: 3 }]);
    } finally {
      await t.dispose();
    }
  });

  it('sends a pipeline of statements with parameters in one round trip, one transaction, each prepared once', async () => {
    const t = await createTestDatabase('postgres');
    const sent = vi.spyOn(pg.Client.prototype, 'query');
    try {
      await t.db.query('create table pipe_t (v int primary key)');
      const count =
        'select count(*)::int as n, (select count(*)::int from pg_prepared_statements where statement = $2) as prepared from pipe_t where v = $1';
      const insert = 'insert into pipe_t values ($1)';
      sent.mockClear();
      const one = await t.db.pipeline!<{ n: number; prepared: number }>([
        { text: insert, params: [1] },
        { text: 'select pg_advisory_xact_lock(42)' },
        { text: count, params: [1, insert] },
      ]);
      // The last statement's rows; it sees the first one's insert (one transaction).
      expect(one.rows).toEqual([{ n: 1, prepared: 1 }]);
      expect(sent.mock.calls).toHaveLength(1); // one round trip
      // Again (the pool hands back the same idle connection): nothing parsed again.
      const two = await t.db.pipeline!<{ n: number; prepared: number }>([
        { text: insert, params: [2] },
        { text: count, params: [2, insert] },
      ]);
      expect(two.rows).toEqual([{ n: 1, prepared: 1 }]);
      // A failing statement rolls back the whole pipeline; the pool goes on working.
      await expect(
        t.db.pipeline!([
          { text: insert, params: [3] },
          { text: 'select 1 / $1::int', params: [0] },
        ]),
      ).rejects.toThrow(/division by zero/);
      const left = await t.db.query<{ v: number }>('select v from pipe_t order by v');
      expect(left.rows).toEqual([{ v: 1 }, { v: 2 }]);
      const three = await t.db.pipeline!<{ n: number }>([
        { text: insert, params: [3] },
        { text: count, params: [3, insert] },
      ]);
      expect(three.rows[0]?.n).toBe(1);
      // Each statement's own result through `onResult` (a scheduling pass answers the finish
      // that rides its pipeline this way); none when the pipeline failed.
      const results: unknown[] = [];
      const four = await t.db.pipeline!<{ n: number }>([
        { text: `${insert} returning v`, params: [4], onResult: (r) => results.push(r.rows) },
        { text: count, params: [4, insert], onResult: (r) => results.push(r.rows) },
      ]);
      expect(four.rows[0]?.n).toBe(1);
      expect(results).toEqual([[{ v: 4 }], [{ n: 1, prepared: 1 }]]);
      results.length = 0;
      await expect(
        t.db.pipeline!([
          { text: `${insert} returning v`, params: [5], onResult: (r) => results.push(r.rows) },
          { text: 'select 1 / $1::int', params: [0] },
        ]),
      ).rejects.toThrow(/division by zero/);
      expect(results).toEqual([]);
      // An empty statement has an empty result; the statements after it keep their own.
      const five = await t.db.pipeline!<{ n: number }>([
        { text: '', onResult: (r) => results.push(r.rows) },
        { text: 'select $1::int as n', params: [5], onResult: (r) => results.push(r.rows) },
        { text: 'select 6 as n', onResult: (r) => results.push(r.rows) },
      ]);
      expect(results).toEqual([[], [{ n: 5 }], [{ n: 6 }]]);
      expect(five.rows).toEqual([{ n: 6 }]);
    } finally {
      sent.mockRestore();
      await t.dispose();
    }
  });
  it('hands each statement its own result on arrival, in order; a throw there fails the pipeline at its end', async () => {
    const t = await createTestDatabase('postgres');
    try {
      await t.db.query('create table arrival_t (v int primary key)');
      const arrived: string[] = [];
      const done = await t.db.pipeline!<{ slept: string }>([
        { text: 'BEGIN' },
        {
          text: 'insert into arrival_t values ($1) returning v',
          params: [1],
          onArrival: (r) => arrived.push(`insert ${JSON.stringify(r.rows)}`),
        },
        { text: 'COMMIT', onArrival: () => arrived.push('commit') },
        { text: `select ''::text as slept`, onArrival: () => arrived.push('select') },
      ]);
      expect(done.rows).toEqual([{ slept: '' }]);
      expect(arrived).toEqual(['insert [{"v":1}]', 'commit', 'select']);
      // A throw in onArrival fails the pipeline at its end; the pool goes on working.
      await expect(
        t.db.pipeline!([
          {
            text: 'select 1 as one',
            onArrival: () => {
              throw new Error('not this');
            },
          },
        ]),
      ).rejects.toThrow(/not this/);
      expect((await t.db.query<{ n: number }>('select count(*)::int as n from arrival_t')).rows).toEqual([
        { n: 1 },
      ]);
    } finally {
      await t.dispose();
    }
  });
  it('listens on several channels over one connection, telling each payload its channel', async () => {
    const t = await createTestDatabase('postgres');
    try {
      const seen: string[] = [];
      const listener = await t.db.listen!(
        ['multi_a', 'multi_b'],
        (m, channel) => seen.push(`${channel}:${m}`),
        () => {},
      );
      await t.db.query(
        "select pg_notify('multi_a', '1'), pg_notify('multi_b', '2'), pg_notify('multi_c', '3')",
      );
      for (let i = 0; i < 100 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
      expect(seen).toEqual(['multi_a:1', 'multi_b:2']);
      const listening = await t.db.query<{ n: string }>(
        "select count(*) as n from pg_stat_activity where query ilike 'listen%' and datname = current_database()",
      );
      expect(Number(listening.rows[0]!.n)).toBe(1);
      await listener.close();
    } finally {
      await t.dispose();
    }
  });
  it("sends a transaction's last statement with its atCommit statements and COMMIT in one round trip", async () => {
    const t = await createTestDatabase('postgres');
    const sent = vi.spyOn(pg.Client.prototype, 'query');
    try {
      await t.db.query('create table last_tx (v int primary key)');
      const seen: string[] = [];
      const listener = await t.db.listen!(
        'last_tx_ch',
        (m) => seen.push(m),
        () => {},
      );
      sent.mockClear();
      const rows = await t.db.transaction(async (tx) => {
        await tx.pipeline!([{ text: 'insert into last_tx values ($1)', params: [1] }]);
        tx.atCommit!("select pg_notify('last_tx_ch', 'committed')");
        const r = await tx.commitWith!<{ v: number }>({
          text: 'insert into last_tx values ($1) returning v',
          params: [2],
        });
        return r.rows;
      });
      expect(rows).toEqual([{ v: 2 }]); // the statement's rows, not the COMMIT's
      expect(sent.mock.calls).toHaveLength(2); // BEGIN + the first pipeline, then statement + notify + COMMIT
      expect((await t.db.query('select v from last_tx order by v')).rows).toEqual([{ v: 1 }, { v: 2 }]);
      for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(seen).toEqual(['committed']);
      // A failing last statement commits nothing of the transaction; the pool goes on working.
      await expect(
        t.db.transaction(async (tx) => {
          await tx.pipeline!([{ text: 'insert into last_tx values ($1)', params: [3] }]);
          return tx.commitWith!({ text: 'insert into last_tx values ($1)', params: [1] });
        }),
      ).rejects.toThrow(/duplicate key/);
      expect((await t.db.query('select v from last_tx order by v')).rows).toEqual([{ v: 1 }, { v: 2 }]);
      await listener.close();
    } finally {
      sent.mockRestore();
      await t.dispose();
    }
  });
  it('runs a pipeline inside a transaction as part of it, its BEGIN first when nothing was sent before', async () => {
    const t = await createTestDatabase('postgres');
    const sent = vi.spyOn(pg.Client.prototype, 'query');
    try {
      await t.db.query('create table pipe_tx (v int primary key)');
      const txid = 'select txid_current()::text as txid';
      sent.mockClear();
      const [a, b] = await t.db.transaction(async (tx) => {
        const one = await tx.pipeline!<{ txid: string }>([
          { text: 'insert into pipe_tx values ($1)', params: [1] },
          { text: txid },
        ]);
        const two = await tx.pipeline!<{ txid: string }>([{ text: txid }]);
        return [one.rows[0]!.txid, two.rows[0]!.txid];
      });
      expect(a).toBe(b); // one transaction across both pipelines
      expect(sent.mock.calls).toHaveLength(3); // BEGIN with the first pipeline, the second, COMMIT
      // A transaction that throws after its pipeline rolls it back.
      await expect(
        t.db.transaction(async (tx) => {
          await tx.pipeline!([{ text: 'insert into pipe_tx values ($1)', params: [2] }]);
          throw new Error('no');
        }),
      ).rejects.toThrow('no');
      expect((await t.db.query('select v from pipe_tx order by v')).rows).toEqual([{ v: 1 }]);
    } finally {
      sent.mockRestore();
      await t.dispose();
    }
  });
});
