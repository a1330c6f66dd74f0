import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { isApiError } from './errors.js';
import { followRunEvents, parseSse } from './follow-events.js';

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

function streamOf(chunks: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const ch of chunks) c.enqueue(enc.encode(ch));
      c.close();
    },
  });
}

const event = (seq: number, type = 'log') =>
  JSON.stringify({ run_id: 'run_1', seq, type, payload: { data: `${seq}` }, at: '2026-01-01T00:00:00.000Z' });

describe('parseSse', () => {
  it('splits messages across chunk boundaries, CRLF and comments; joins multi-line data', async () => {
    const out = [];
    for await (const m of parseSse(
      streamOf([': hello\r\nid: 1\r\nda', 'ta: a\r\ndata: b\r\n\r\nevent: end\ndata: {}\n', '\n']),
    ))
      out.push(m);
    expect(out).toEqual([
      { event: 'message', data: 'a\nb', id: '1' },
      { event: 'end', data: '{}' },
    ]);
  });
});

describe('followRunEvents over a real server', () => {
  it('resumes a dropped stream with Last-Event-ID and returns the terminal status', async () => {
    const seenHeaders: Array<string | undefined> = [];
    const server = createServer((req, res) => {
      seenHeaders.push(req.headers['last-event-id'] as string | undefined);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (seenHeaders.length === 1) {
        res.end(`id: 1\ndata: ${event(1)}\n\nid: 2\ndata: ${event(2)}\n\n`); // drops without `end`
        return;
      }
      res.end(
        `id: 2\ndata: ${event(2)}\n\nid: 3\ndata: ${event(3, 'terminal_status')}\n\nevent: end\ndata: {"run_status":"completed"}\n\n`,
      );
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const seqs: number[] = [];
    const it = followRunEvents({ url, token: 'rnt_adm_x', runId: 'run_1' });
    let next = await it.next();
    while (!next.done) {
      seqs.push(next.value.seq);
      next = await it.next();
    }
    expect(seqs).toEqual([1, 2, 3]);
    expect(next.value).toBe('completed');
    expect(seenHeaders).toEqual([undefined, '2']);
  });

  it('throws the server error as an ApiError', async () => {
    const server = createServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'not-found', message: 'no such run' } }));
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const err = await followRunEvents({ url, runId: 'nope' })
      .next()
      .catch((e: unknown) => e);
    expect(isApiError(err, 'not-found')).toBe(true);
  });
});
