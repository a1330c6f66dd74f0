// One process of the cross-replica floor (notify-floor.ts): the hops of runt's cross-replica
// offer with nothing of runt in them. FLOOR_ROLE=a: an HTTP server whose POST /submit writes one
// row and its pg_notify in ONE statement that commits without waiting for the disk, then makes
// it durable before answering (runt's submit on Postgres does the same: transitions.ts,
// `visibleFirst` and `flushWal`). FLOOR_ROLE=b: LISTENs on its own connection and sends each
// notification's id to the WebSocket clients; a `claim` or `finish` message on that WebSocket
// updates the row in a durable commit and is answered by a `reply` (runt's claim and status
// report over the agent's link). Prints `ready <port>` once it listens.
// DATABASE_URL names the database; the table is made by the parent (notify-floor.ts).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import pg from 'pg';
import { WebSocketServer, type WebSocket } from 'ws';

const FLOOR_CHANNEL = 'runt_bench_floor';

const SUBMIT_SQL = `with s as (select set_config('synchronous_commit', 'off', true) as off),
i as (insert into floor_runs (id, body) select $1, $2::jsonb from s where s.off is not null returning id)
select pg_notify('${FLOOR_CHANNEL}', i.id) from i`;
const FLUSH_SQL = `select pg_logical_emit_message(true, 'runt-bench-floor', '')`;
const CLAIM_SQL = `update floor_runs set state = 'claimed' where id = $1 and state = 'queued'`;
const FINISH_SQL = `update floor_runs set state = 'done' where id = $1 and state = 'claimed'`;

function body(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on('data', (b: Buffer) => parts.push(b));
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

function answer(res: ServerResponse, status: number, json: unknown): void {
  const text = JSON.stringify(json);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function main(): Promise<void> {
  const role = process.env.FLOOR_ROLE;
  if (role !== 'a' && role !== 'b') throw new Error('FLOOR_ROLE: a or b');
  const db = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await db.connect();
  const clients = new Set<WebSocket>();
  const server = createServer((req, res) => {
    void (async () => {
      try {
        const { id } = JSON.parse(await body(req)) as { id: string };
        if (role === 'a' && req.url === '/submit') {
          await db.query(SUBMIT_SQL, [id, JSON.stringify({ runtime: 'floor', command: ['x'] })]);
          await db.query(FLUSH_SQL);
          answer(res, 201, { id });
        } else answer(res, 404, { error: 'not found' });
      } catch (e) {
        answer(res, 500, { error: e instanceof Error ? e.message : String(e) });
      }
    })();
  });
  if (role === 'b') {
    const listen = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await listen.connect();
    listen.on('notification', (n) => {
      const text = JSON.stringify({ type: 'offer', id: n.payload });
      for (const ws of clients) ws.send(text);
    });
    await listen.query(`listen ${FLOOR_CHANNEL}`);
    const wss = new WebSocketServer({ server, perMessageDeflate: false });
    wss.on('connection', (ws) => {
      clients.add(ws);
      ws.on('close', () => clients.delete(ws));
      ws.on('message', (data) => {
        const m = JSON.parse((data as Buffer).toString('utf8')) as {
          op: 'claim' | 'finish';
          id: string;
          rid: string;
        };
        db.query(m.op === 'claim' ? CLAIM_SQL : FINISH_SQL, [m.id]).then(
          (r) => ws.send(JSON.stringify({ type: 'reply', rid: m.rid, ok: r.rowCount === 1 })),
          (e: unknown) => ws.send(JSON.stringify({ type: 'reply', rid: m.rid, ok: false, error: String(e) })),
        );
      });
    });
  }
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address() as { port: number };
    process.stdout.write(`ready ${port}\n`);
  });
  process.once('SIGTERM', () => process.exit(0));
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(1);
});
