import fs from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { leaseMigrations } from '@runt/leases';
import { pairingMigrations } from '@runt/pairing';
import { submitRunRequestSchema } from '@runt/protocol';
import {
  countStatements,
  migrate,
  openPglite,
  openPostgres,
  type Database,
  type Queryable,
  type Statement,
} from '@runt/sql';
import type { TestDatabase } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { controlPlaneMigrations } from '../src/migrations.js';
import { freshOffer } from '../src/runs/scheduler.js';
import * as transitions from '../src/runs/transitions.js';
import { addWorkstation, migratedDatabase } from './scheduler-fixtures.js';

/**
 * Issue 10: on Postgres a submit's insert commits without waiting for the disk, so the
 * scheduling pass it asks for (`visible`) runs while the WAL is flushed; the submit is answered
 * only once that flush covers the insert — durable before the answer, as before.
 */
describe('a submit on postgres', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await migratedDatabase('postgres');
  });
  afterAll(async () => {
    await t?.dispose();
  });

  const lsn = async (fn: 'pg_current_wal_insert_lsn' | 'pg_current_wal_flush_lsn') =>
    (await t.db.query<{ l: string }>(`select ${fn}()::text as l`)).rows[0]!.l;

  /**
   * The database, except that once the runs' insert has committed (and before the submit may
   * send anything else) it notes how far the WAL then reached: past the insert's commit record.
   */
  function noting(
    db: Database,
    onInserted: (walEnd: string) => void,
    onPipelined: (rows: unknown[]) => void = () => {},
  ): Database {
    const after = async <R>(text: string, r: R): Promise<R> => {
      if (/insert into runs/.test(text)) onInserted(await lsn('pg_current_wal_insert_lsn'));
      return r;
    };
    const q =
      (x: Queryable): Queryable['query'] =>
      async (text: string, params?: unknown[]) =>
        after(text, await x.query(text, params));
    return {
      ...db,
      backend: db.backend,
      priority: db.priority,
      close: () => db.close(),
      query: q(db),
      transaction: (fn) => db.transaction((tx) => fn({ ...tx, query: q(tx) })),
      // A pipeline that commits in its middle (a submit's placement, then its WAL flush): the WAL
      // end is read by a statement right after its COMMIT, on the same connection.
      pipeline: async (statements) => {
        const commit = statements.findIndex((x) => x.text === 'COMMIT');
        if (commit < 0)
          return after(statements.map((x) => x.text).join('\n'), await db.pipeline!(statements)) as never;
        const note = {
          text: 'select pg_current_wal_insert_lsn()::text as l',
          onArrival: (r: { rows: unknown[] }) => onInserted((r.rows[0] as { l: string }).l),
        };
        const out = await db.pipeline!([
          ...statements.slice(0, commit + 1),
          note,
          ...statements.slice(commit + 1),
        ]);
        onPipelined(out.rows);
        return out as never;
      },
    };
  }

  /** `t.db` {@link noting} the WAL's end after the insert and the pipeline's rows, counting round trips. */
  function watched() {
    let walEnd: string | undefined;
    let roundTrips = 0;
    let pipelined: unknown[] = [];
    const db = countStatements(
      noting(
        t.db,
        (l) => (walEnd = l),
        (rows) => (pipelined = rows),
      ),
      (c) => (roundTrips += c.roundTrips),
    );
    return { db, walEnd: () => walEnd, roundTrips: () => roundTrips, pipelined: () => pipelined };
  }

  /** The WAL on disk (`flushed`, read at the answer) reached past the insert's commit (`walEnd`). */
  async function expectFlushedPast(flushed: string, walEnd: string | undefined): Promise<void> {
    const ok = await t.db.query<{ ok: boolean }>('select $1::pg_lsn >= $2::pg_lsn as ok', [flushed, walEnd]);
    expect({ flushed, walEnd, durable: ok.rows[0]!.ok }).toEqual({ flushed, walEnd, durable: true });
  }

  it.each([
    ['without an idempotency key (one statement)', undefined],
    ['with an idempotency key (a transaction)', 'durable'],
  ])(
    '%s: is answered only once the WAL on disk reaches past its commit, the pass asked for before',
    async (_, key) => {
      for (let i = 0; i < 20; i++) {
        let walEnd: string | undefined;
        const events: string[] = [];
        const input = submitRunRequestSchema.parse({
          runtime: 'fake',
          command: ['true'],
          ...(key ? { idempotency_key: `${key}-${i}` } : {}),
        });
        const out = await transitions.submitMany(
          noting(t.db, (l) => (walEnd = l)),
          [input],
          undefined,
          () => events.push('visible'),
        );
        events.push('answered');
        const flushed = await lsn('pg_current_wal_flush_lsn');
        expect(out[0]!.created).toBe(true);
        expect(events).toEqual(['visible', 'answered']);
        await expectFlushedPast(flushed, walEnd);
      }
    },
  );

  it.each([
    ['offered to a link held by another replica', 'elsewhere', 'offered'],
    ['left queued (no workstation takes it)', 'nobody', 'queued'],
  ])(
    'placed by its submit, %s: its WAL flush rides the same message (one round trip), durable before the answer',
    async (_, runtime, status) => {
      await addWorkstation(t.db, `ws_${runtime}`, 'elsewhere', 1000, 'B');
      for (let i = 0; i < 10; i++) {
        const w = watched();
        const db = w.db;
        const out = await transitions.submitMany(
          db,
          [submitRunRequestSchema.parse({ runtime, command: ['true'] })],
          undefined,
          undefined,
          (items) => freshOffer(items, 'A'),
          () => Promise.reject(new Error('not held here')),
        );
        const flushed = await lsn('pg_current_wal_flush_lsn');
        expect(out[0]!.run.status).toBe(status);
        expect(w.roundTrips()).toBe(1);
        expect(w.pipelined()).toEqual([{ flushed: true }]); // the pipeline's own flush
        await expectFlushedPast(flushed, w.walEnd());
      }
    },
  );

  it('placed by its submit onto a link held here and claimed on offer there: answered only once the claim commit flushed the WAL past the insert, with no flush of its own', async () => {
    await addWorkstation(t.db, 'ws_here', 'here', 1000, 'A');
    for (let i = 0; i < 20; i++) {
      const w = watched();
      const db = w.db;
      const out = await transitions.submitMany(
        db,
        [submitRunRequestSchema.parse({ runtime: 'here', command: ['true'] })],
        undefined,
        undefined,
        (items) => freshOffer(items, 'A'),
        async (run) => (await transitions.claimFresh(db, run.id, 'ws_here', 'ws_here/r1', 30_000))?.run,
      );
      const flushed = await lsn('pg_current_wal_flush_lsn');
      expect(out[0]!.run).toMatchObject({ status: 'accepted', lease: { holder: 'ws_here/r1' } });
      // The submit's pipeline and the claim's; the claim's synchronous commit is the flush (the
      // pipeline's is skipped: the placement noted the run held here).
      expect(w.roundTrips()).toBe(2);
      expect(w.pipelined()).toEqual([{ flushed: false }]);
      await expectFlushedPast(flushed, w.walEnd());
    }
  });
  /** `t.db`, except that a submit's pipeline gets `extra` right after its COMMIT (`before`: right before it). */
  function withStatement(extra: Statement, before = false, db: Database = t.db): Database {
    return {
      ...db,
      pipeline: (statements) => {
        const at = statements.findIndex((x) => x.text === 'COMMIT') + (before ? 0 : 1);
        return db.pipeline!([...statements.slice(0, at), extra, ...statements.slice(at)]);
      },
    };
  }
  /** Advisory lock `key` held by a transaction of its own until `release()`; `done` once it ended. */
  async function holdLock(key: number) {
    let release = () => {};
    const released = new Promise<void>((r) => (release = r));
    let holding = () => {};
    const held = new Promise<void>((r) => (holding = r));
    const done = t.db.transaction(async (tx) => {
      await tx.query('select pg_advisory_xact_lock($1)', [key]);
      holding();
      await released;
    });
    await held;
    return { release, done };
  }
  /** A pool whose connections go through a proxy: `cut()` severs them as a network would. */
  async function cuttablePool() {
    const sockets = new Set<net.Socket>();
    const proxy = net.createServer((client) => {
      const server = net.connect(Number(new URL(t.url!).port || 5432), new URL(t.url!).hostname);
      for (const [a, b] of [
        [client, server],
        [server, client],
      ] as const) {
        a.pipe(b);
        a.on('error', () => {});
        a.on('close', () => b.destroy());
      }
      sockets.add(client);
      client.on('close', () => sockets.delete(client));
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const url = new URL(t.url!);
    url.host = `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
    const db = await openPostgres({ url: url.toString() });
    return {
      db,
      cut: () => {
        for (const s of sockets) s.destroy();
      },
      close: async () => {
        await db.close();
        proxy.close();
      },
    };
  }
  const placedElsewhere = (db: Database, runtime: string, visible?: () => void) =>
    transitions.submitMany(
      db,
      [submitRunRequestSchema.parse({ runtime, command: ['true'] })],
      undefined,
      visible,
      (items) => freshOffer(items, 'A'),
      () => Promise.reject(new Error('not held here')),
    );

  it('placed by its submit for a link held elsewhere: the offer is published at the COMMIT while the submitting process hears nothing until its message is done', async () => {
    // Issue 10: the row used to be sent ahead of the flush (a protocol Flush after the COMMIT),
    // waking this process while the other replica's LISTEN process and event loop needed the CPU.
    await addWorkstation(t.db, 'ws_quiet', 'quiet', 1000, 'B');
    const heard: string[] = [];
    const listener = await t.db.listen!(
      'runt_link',
      (payload) => heard.push(payload),
      () => {},
    );
    // Holds the statement put after the placement's COMMIT (the flush waits behind it).
    const { release, done } = await holdLock(4242);
    try {
      const events: string[] = [];
      const submitted = placedElsewhere(
        withStatement({ text: 'select pg_advisory_xact_lock_shared(4242)' }),
        'quiet',
        () => events.push('visible'),
      );
      for (let i = 0; i < 250 && heard.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(heard).toHaveLength(1); // committed and published
      await new Promise((r) => setTimeout(r, 200));
      expect(events).toEqual([]); // no row yet: nothing arrived before the message's end
      release();
      const out = await submitted;
      expect(events).toEqual(['visible']);
      expect(out[0]!.run.status).toBe('offered');
      expect(heard[0]).toContain(out[0]!.run.id);
    } finally {
      release();
      await done;
      await listener.close();
    }
  });

  it('placed by its submit, whose connection is lost after the COMMIT before any answer came: answered with the run read back durably', async () => {
    // A real loss (a proxy cuts the sockets): a backend told to end flushes what it had buffered,
    // the COMMIT's answer with it, so only a cut connection loses that answer.
    await addWorkstation(t.db, 'ws_lost_after', 'lost-after', 1000, 'B');
    const proxied = await cuttablePool();
    const heard: string[] = [];
    const listener = await t.db.listen!(
      'runt_link',
      (payload) => heard.push(payload),
      () => {},
    );
    const { release, done } = await holdLock(4243);
    try {
      const submitted = placedElsewhere(
        withStatement({ text: 'select pg_advisory_xact_lock_shared(4243)' }, false, proxied.db),
        'lost-after',
      );
      for (let i = 0; i < 250 && heard.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(heard).toHaveLength(1); // committed; its answer not sent yet
      proxied.cut();
      const out = await submitted;
      expect(out[0]!.run).toMatchObject({ status: 'offered', workstation_id: 'ws_lost_after' });
      const rows = await t.db.query(`select status from runs where runtime = 'lost-after'`);
      expect(rows.rows).toEqual([{ status: 'offered' }]);
    } finally {
      release();
      await done;
      await listener.close();
      await proxied.close();
    }
  });

  it('a connection cut while the placement still waits before its COMMIT ends its server process: the submit is answered as lost and nothing commits later', async () => {
    await addWorkstation(t.db, 'ws_lost_mid', 'lost-mid', 1000, 'B');
    const proxied = await cuttablePool();
    const { release, done } = await holdLock(4245);
    try {
      const submitted = placedElsewhere(
        withStatement({ text: 'select pg_advisory_xact_lock_shared(4245)' }, true, proxied.db),
        'lost-mid',
      );
      // the backend waits on the lock, before its COMMIT (already in its buffer)
      for (let i = 0; i < 100; i++) {
        const w = await t.db.query(`select 1 from pg_locks where locktype = 'advisory' and not granted`);
        if (w.rows.length > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      proxied.cut();
      const err = await submitted.then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err).toBeDefined(); // answered as lost: its server process ended, no run to read back
      release();
      await done;
      await new Promise((r) => setTimeout(r, 500));
      const rows = await t.db.query(`select status from runs where runtime = 'lost-mid'`);
      // The loss is the answer only when nothing committed, and nothing will: the server process
      // that held the COMMIT in its input buffer was ended before the read-back.
      expect(rows.rows).toEqual([]);
    } finally {
      release();
      await done;
      await proxied.close();
    }
  });

  it('placed by its submit, whose connection is lost before the COMMIT: not answered, nothing committed', async () => {
    await addWorkstation(t.db, 'ws_lost_before', 'lost-before', 1000, 'B');
    const err = await placedElsewhere(
      withStatement({ text: 'select pg_terminate_backend(pg_backend_pid())' }, true),
      'lost-before',
    ).then(
      () => undefined,
      (e: unknown) => e as Error & { code?: string },
    );
    expect(err?.code).toBe('57P01');
    expect((await t.db.query(`select 1 from runs where runtime = 'lost-before'`)).rows).toEqual([]);
  });

  /**
   * The database whose first WAL flush fails (a lost connection) and would succeed if sent
   * again; `onFailed` runs right after that failure (a test's "the server crashed and restarted
   * and lost the insert").
   */
  function flushFailsOnce(onFailed: () => Promise<void>): { db: Database; confirms: () => number } {
    let failed = false;
    let confirms = 0;
    const db: Database = {
      ...t.db,
      query: async (text, params) => {
        if (text.includes("'runt-flush'") && !failed) {
          failed = true;
          await onFailed();
          throw new Error('flush: connection lost');
        }
        if (text.includes("'runt-confirm'")) confirms++;
        return t.db.query(text, params);
      },
    };
    return { db, confirms: () => confirms };
  }
  const input = (runtime: string) => submitRunRequestSchema.parse({ runtime, command: ['x'] });

  it('whose flush failed is answered once its run is read back, durable', async () => {
    const f = flushFailsOnce(async () => {});
    const { run } = await transitions.submit(f.db, input('confirm-rt'));
    expect(f.confirms()).toBe(1);
    expect((await t.db.query(`select 1 from runs where id = $1`, [run.id])).rows).toHaveLength(1);
  });

  it('whose flush and first read-backs failed on connections a restart closed is answered once a read-back answers', async () => {
    const f = flushFailsOnce(async () => {});
    // The pool hands out three more connections the server terminated (the read-backs').
    let dead = 3;
    const db: Database = {
      ...f.db,
      query: async (text, params) => {
        if (text.includes("'runt-confirm'") && dead > 0) {
          dead--;
          throw Object.assign(new Error('terminating connection due to administrator command'), {
            code: '57P01',
          });
        }
        return f.db.query(text, params);
      },
    };
    const { run } = await transitions.submit(db, input('confirm-dead-rt'));
    expect(dead).toBe(0);
    expect(f.confirms()).toBe(1);
    expect((await t.db.query(`select 1 from runs where id = $1`, [run.id])).rows).toHaveLength(1);
  });

  it('whose flush failed is not answered when the run is gone (a crash lost the insert): no blind retry of the flush', async () => {
    const f = flushFailsOnce(async () => {
      await t.db.query(`delete from runs where runtime = 'lost-rt'`);
    });
    const err = await transitions.submit(f.db, input('lost-rt')).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toBe('flush: connection lost');
    expect(f.confirms()).toBe(1);
  });
});

/**
 * On embedded PGlite (a data directory) a submit commits synchronously; its answer waits for
 * the host `fdatasync` of the WAL segment holding its commit record, which PGlite's own file
 * system layer never made (`SyncingNodeFS` in @runt/sql; docs/reliability.md) — one sync for
 * the whole batch, not one per run.
 */
describe('a submit on PGlite (a data directory)', () => {
  let dir = '';
  let db: Database;
  const walSyncs: string[] = [];
  beforeAll(async () => {
    dir = fs.mkdtempSync(join(tmpdir(), 'runt-submit-durable-'));
    const root = join(dir, 'db');
    const fdatasync = fs.fdatasyncSync.bind(fs);
    vi.spyOn(fs, 'fdatasyncSync').mockImplementation((fd) => {
      const path = relative(root, fs.readlinkSync(`/proc/self/fd/${fd}`));
      if (path.startsWith('pg_wal/')) walSyncs.push(path);
      fdatasync(fd);
    });
    db = await openPglite({ dataDir: root, upkeep: false });
    await migrate(db, [...pairingMigrations, ...leaseMigrations, ...controlPlaneMigrations]);
  });
  afterAll(async () => {
    vi.restoreAllMocks();
    await db?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    ['without idempotency keys', undefined],
    ['with idempotency keys', 'durable'],
  ])('of 20 runs %s: answered after one fdatasync of the WAL segment holding its commit', async (_, key) => {
    walSyncs.splice(0);
    const inputs = Array.from({ length: 20 }, (_, i) =>
      submitRunRequestSchema.parse({
        runtime: 'fake',
        command: ['true'],
        ...(key ? { idempotency_key: `${key}-${i}` } : {}),
      }),
    );
    const out = await transitions.submitMany(db, inputs);
    const synced = walSyncs.splice(0);
    expect(out.every((r) => r.created)).toBe(true);
    // Everything the WAL holds was flushed (Postgres' view) by the time of the answer…
    const wal = (
      await db.query<{ file: string; flushed: boolean }>(
        `select pg_walfile_name(pg_current_wal_flush_lsn()) as file,
                pg_current_wal_flush_lsn() = pg_current_wal_insert_lsn() as flushed`,
      )
    ).rows[0]!;
    expect(wal.flushed).toBe(true);
    // …and that flush was a host fdatasync of its segment: one for the batch.
    expect(synced).toEqual([`pg_wal/${wal.file}`]);
  });
});
