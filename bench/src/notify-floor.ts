// The cross-replica offer's floor (issue 10): the same hops as runt's "submit on A, agent linked
// to B" sample, with nothing of runt in them, so runt's figure can be read against what this
// machine gives that path at the same hour. Two processes (notify-floor-replica.ts): the bench
// sends an HTTP request to A (the client runt's sample uses: @runt/protocol's keep-alive
// `node:http` transport), A writes one row and its `pg_notify` in one statement that commits
// without waiting for the disk, B's LISTEN connection gets the notification, B sends it over a
// WebSocket to the bench; A answers once the commit is durable. A sample then finishes as
// runt's does (its link doubles' claim and status report over the link): two requests to B on
// that WebSocket (claim, finish), each one durable update answered by a reply. No auth, no
// validation, no scheduler, no run table of 40 columns: what is left is the machine's wake-ups,
// the loopback sockets and Postgres.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { WebSocket } from 'ws';
import { HttpTransport } from '@runt/protocol';
import { stderrTail, stopProcesses } from './replica-ready.js';
import { nowMs } from './stats.js';

export interface FloorSample {
  /** The row's id. */
  id: string;
  /** When the submit was sent (`nowMs`). */
  sent: number;
  /** Submit sent → offer received by the bench over B's WebSocket, ms. */
  offerMs: number;
  /** Submit sent → A's answer received, ms. */
  answeredMs: number;
}

export interface NotifyFloor {
  /** Pids of A and B (their CPU is read from /proc by the caller). */
  pids: { a: number; b: number };
  /** One sample: submit on A, the offer from B, then claim and finish on B over its WebSocket. */
  sample(): Promise<FloorSample>;
  /** Ends both processes (SIGTERM, then waits for their exit) and the bench's connections. */
  close(): Promise<void>;
}

/**
 * Starts the floor's A and B on the database `url` (its table `floor_runs` is made here).
 *
 * @example
 * const floor = await startNotifyFloor(db.url);
 * try { const { offerMs } = await floor.sample(); } finally { await floor.close(); }
 */
export async function startNotifyFloor(url: string): Promise<NotifyFloor> {
  const setup = new pg.Client({ connectionString: url });
  await setup.connect();
  try {
    await setup.query(`create table if not exists floor_runs (
      id text primary key, body jsonb not null, state text not null default 'queued',
      created_at timestamptz not null default now())`);
  } finally {
    await setup.end();
  }
  const procs: ChildProcess[] = [];
  const stop = () => stopProcesses(procs);
  try {
    const a = await startFloorProcess('a', url, procs);
    const b = await startFloorProcess('b', url, procs);
    const toA = new HttpTransport({ url: `http://127.0.0.1:${a.port}`, keepAlive: true });
    const waiting = new Map<string, (at: number) => void>();
    const early = new Map<string, number>();
    const replies = new Map<string, (m: { ok: boolean; error?: string }) => void>();
    let nextRequest = 0;
    const ws = new WebSocket(`ws://127.0.0.1:${b.port}/`, { perMessageDeflate: false });
    ws.on('message', (data) => {
      const at = nowMs();
      const m = JSON.parse((data as Buffer).toString('utf8')) as
        { type: 'offer'; id: string } | { type: 'reply'; rid: string; ok: boolean; error?: string };
      if (m.type === 'reply') {
        replies.get(m.rid)?.(m);
        replies.delete(m.rid);
        return;
      }
      const w = waiting.get(m.id);
      if (w) w(at);
      else early.set(m.id, at);
    });
    ws.on('close', () => {
      for (const r of replies.values()) r({ ok: false, error: 'closed' });
      replies.clear();
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const submit = async (id: string) => {
      const r = await toA.send({ method: 'POST', path: 'submit', json: { id } });
      if (r.status !== 201)
        throw new Error(`floor submit: ${r.status} ${Buffer.from(r.body).toString('utf8')}`);
    };
    const request = async (op: 'claim' | 'finish', id: string) => {
      const rid = `q${nextRequest++}`;
      const r = await new Promise<{ ok: boolean; error?: string }>((resolve) => {
        replies.set(rid, resolve);
        ws.send(JSON.stringify({ op, id, rid }));
      });
      if (!r.ok) throw new Error(`floor ${op}: ${r.error ?? 'no row in the state it needs'}`);
    };
    return {
      pids: { a: a.proc.pid!, b: b.proc.pid! },
      async sample() {
        const id = randomUUID();
        const sent = nowMs();
        await submit(id);
        const answeredMs = nowMs() - sent;
        const at = early.get(id) ?? (await new Promise<number>((resolve) => waiting.set(id, resolve)));
        waiting.delete(id);
        early.delete(id);
        await request('claim', id);
        await request('finish', id);
        return { id, sent, offerMs: at - sent, answeredMs };
      },
      async close() {
        ws.close();
        await stop();
      },
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

async function startFloorProcess(
  role: 'a' | 'b',
  url: string,
  procs: ChildProcess[],
): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(
    process.execPath,
    [fileURLToPath(new URL('../dist/notify-floor-replica.js', import.meta.url))],
    {
      env: { ...process.env, FLOOR_ROLE: role, DATABASE_URL: url },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  procs.push(proc);
  const said = stderrTail(proc);
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /^ready (\d+)\n/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code) =>
      reject(new Error(`floor ${role} exited (${code}) before it was ready: ${said()}`)),
    );
  });
  return { proc, port };
}
